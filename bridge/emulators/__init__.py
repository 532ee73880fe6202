"""Strict local emulators of the outside APIs, for tests and `roombridge demo`."""
