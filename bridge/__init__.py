"""roombridge: keeps room booking platforms and room calendars consistent."""

__version__ = "0.1.0"
