"""Running the central system: the app that wires every part together, the command line, and the asyncio,
garbage-collector and time helpers they share."""
