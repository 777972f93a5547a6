"""OCPP 1.6J: inbound handlers and outbound commands."""
