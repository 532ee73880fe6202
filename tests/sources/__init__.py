"""Tests of the booking sources and writers."""
