"""Simulators of chargers, EVs, the Amp Guard mains meter and the site they share."""
