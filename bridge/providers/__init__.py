"""Booking-provider HTTP clients (auth, paging, retries); they return outside JSON."""
