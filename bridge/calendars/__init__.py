"""Room calendar backends: CalDAV, Google Calendar, Microsoft 365 (I/O at the edge)."""
