"""Signal receivers. Each is thin and calls a service."""
