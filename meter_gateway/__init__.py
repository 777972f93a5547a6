"""Meter gateway: reads mains meters (Modbus TCP, MQTT), validates and normalises their readings.

This package never imports ``csms``: the central system embeds it, not the other way round.
"""
