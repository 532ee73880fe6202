"""Per-room ICS feeds: cached per-booking chunks, concatenated and served over HTTP.

``render`` turns one booking into its feed chunk and chunks into a feed; ``refresh`` keeps a
room's cached chunks in step with the provider snapshot in the state store; ``publisher``
assembles a room's feed for a request (token check, window, ETag, Last-Modified).
"""
