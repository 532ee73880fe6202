"""Scheduled work: a small in-process scheduler and the room jobs it runs."""
