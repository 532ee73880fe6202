"""The ``MappingError`` family: bad outside data, named by booking and field."""

from __future__ import annotations

from bridge.errors import BridgeError


class MappingError(BridgeError):
    """Outside data that cannot be mapped; names the booking and the field at fault."""

    def __init__(self, message: str, *, booking: str | None = None, field: str | None = None):
        self.reason = message
        self.booking = booking
        self.field = field
        where = ", ".join(
            part
            for part in (
                f"booking {booking}" if booking else "",
                f"field {field}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class MalformedInput(MappingError):
    """The input is not parseable at all (bad JSON, bad iCalendar)."""


class MissingField(MappingError):
    """A required field is absent or null."""


class InvalidValue(MappingError):
    """A field holds a value of the wrong type, format or range."""


class UnknownTimezone(InvalidValue):
    """A time zone name that is neither IANA nor a known Windows zone."""


class UnsupportedRecurrence(MappingError):
    """A recurrence the target cannot express, or one that would expand without bound."""
