"""Central system (CSMS) for dynamic load balancing of EV chargers behind a building's main fuse."""

__version__ = "0.1.0"
