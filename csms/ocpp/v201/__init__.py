"""OCPP 2.0.1: inbound handlers and outbound commands."""
