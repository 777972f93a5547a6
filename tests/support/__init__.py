"""Helpers shared by the test suites: real processes (mosquitto) started on free local ports."""
