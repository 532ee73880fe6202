"""Canonical, immutable records every layer of the bridge speaks.

Providers are mapped into these records (``mappings/``), the planners compare them, and the
calendar and feed renderers map them back out. Times are always timezone-aware. A recurring
booking keeps its rule in the room's local zone, so 09:00 stays 09:00 across DST changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class BookingStatus(StrEnum):
    """Whether a booking (or one occurrence) holds the room."""

    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"

    @property
    def is_live(self) -> bool:
        """Whether the booking blocks the room (tentative ones do)."""
        return self is not BookingStatus.CANCELLED


class BufferMode(StrEnum):
    """How setup/cleanup buffers are shown in calendars and feeds."""

    SEPARATE = "separate"
    MERGED = "merged"
    HIDDEN = "hidden"


class Privacy(StrEnum):
    """How much of a booking a calendar or feed may show."""

    BUSY = "busy"
    TITLES = "titles"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class BookingKey:
    """Identity of a booking: the provider's configured name and its booking key."""

    provider: str
    key: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.key}"


@dataclass(frozen=True, slots=True)
class Person:
    """An organizer or attendee; every field is optional because providers differ."""

    email: str | None = None
    name: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Buffers:
    """Setup time before and cleanup time after a booking."""

    before: timedelta = timedelta(0)
    after: timedelta = timedelta(0)

    def __bool__(self) -> bool:
        return bool(self.before or self.after)


NO_BUFFERS = Buffers()


@dataclass(frozen=True, slots=True)
class Override:
    """One occurrence of a recurring booking that differs from its rule.

    ``recurrence_id`` is the instant the rule would have produced; ``start``/``end`` are where
    the occurrence really is. Fields left ``None`` inherit from the master booking.
    """

    recurrence_id: datetime
    start: datetime
    end: datetime
    status: BookingStatus | None = None
    title: str | None = None
    description: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A recurrence in the room's local time: RRULE, RDATEs, EXDATEs and overrides.

    ``rrule`` is the RFC 5545 value without the ``RRULE:`` prefix (``UNTIL`` in UTC ``Z`` form).
    ``rdates``/``exdates``/override ``recurrence_id`` values are aware instants of occurrence
    starts. A recurrence with neither rule nor RDATEs has only its first occurrence.
    """

    rrule: str | None = None
    rdates: tuple[datetime, ...] = ()
    exdates: tuple[datetime, ...] = ()
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True, slots=True)
class Booking:
    """A provider booking of one room: a single meeting or a whole recurring series.

    For a recurring booking ``start``/``end`` describe the first occurrence of the rule
    (DTSTART/DTEND). ``extra`` carries provider fields with no canonical home that must
    survive a round trip (for example a Nexudus ``CoworkerId``), as sorted name/value pairs.
    """

    provider: str
    key: str
    resource: str
    start: datetime
    end: datetime
    timezone: str
    status: BookingStatus = BookingStatus.CONFIRMED
    title: str = ""
    description: str = ""
    organizer: Person | None = None
    attendees: tuple[Person, ...] = ()
    private: bool = False
    buffers: Buffers = NO_BUFFERS
    recurrence: Recurrence | None = None
    version: str | None = None
    updated: datetime | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"booking {self.provider}/{self.key}: start and end must be aware")
        if self.end <= self.start:
            raise ValueError(f"booking {self.provider}/{self.key}: end must be after start")

    @property
    def booking_key(self) -> BookingKey:
        """The (provider, key) identity."""
        return BookingKey(self.provider, self.key)

    @property
    def zone(self) -> ZoneInfo:
        """The room's time zone object."""
        return ZoneInfo(self.timezone)

    @property
    def duration(self) -> timedelta:
        """Length of one (unmodified) occurrence."""
        return self.end - self.start

    @property
    def is_recurring(self) -> bool:
        """Whether the booking has more than its first occurrence, or could."""
        return self.recurrence is not None and bool(self.recurrence.rrule or self.recurrence.rdates)

    def extra_value(self, name: str) -> str | None:
        """The value of one provider-specific extra field, if present."""
        return dict(self.extra).get(name)

    def evolve(self, **changes: object) -> Booking:
        """A copy with some fields replaced."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval [start, end) of aware instants; expansion is always bounded by one."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be aware")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) intersects the window."""
        return start < self.end and end > self.start

    @classmethod
    def around(cls, now: datetime, past_days: int, future_days: int) -> Window:
        """The sync window around ``now``."""
        return cls(now - timedelta(days=past_days), now + timedelta(days=future_days))


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One concrete occurrence of a booking inside a window.

    ``recurrence_id`` is ``None`` for a non-recurring booking, else the rule's instant for
    this occurrence (equal to ``start`` unless the occurrence was moved).
    """

    booking: BookingKey
    start: datetime
    end: datetime
    status: BookingStatus
    recurrence_id: datetime | None = None
    buffers: Buffers = NO_BUFFERS

    @property
    def blocked_start(self) -> datetime:
        """Start of the time the room is blocked, setup buffer included (elapsed time, UTC)."""
        return self.start.astimezone(UTC) - self.buffers.before

    @property
    def blocked_end(self) -> datetime:
        """End of the time the room is blocked, cleanup buffer included (elapsed time, UTC)."""
        return self.end.astimezone(UTC) + self.buffers.after


@dataclass(frozen=True, slots=True)
class Room:
    """A configured room: the unit of work, locking and feeds."""

    id: str
    name: str
    timezone: str
    provider: str
    resource: str
    calendar: str | None = None
    calendar_id: str | None = None
    direction: str = "to-calendar"
    buffers: BufferMode = BufferMode.SEPARATE
    default_buffers: Buffers = NO_BUFFERS
    feed_privacy: Privacy = Privacy.BUSY
    devices: str | None = None
    device_space: str | None = None
    device_lead: timedelta = timedelta(minutes=10)
    device_code_to_organizer: bool = False
    series_decline_percent: int = 50
    default_customer: str | None = None
