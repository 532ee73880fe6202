"""Booking sources: a provider client joined with its mapping, read per room."""
