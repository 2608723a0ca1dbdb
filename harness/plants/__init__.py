"""Planted pairs whose answer is known. Only the pytest plugin and the command line load them; they reach
the registry through ``harness.sources.models.add_pair_source``."""
