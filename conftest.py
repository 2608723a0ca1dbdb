"""Root pytest configuration: shared by the unit tests and the claim suites."""
