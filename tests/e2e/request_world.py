"""A world where people book the room from a calendar: foreign events in the room collection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar

from bridge.calendars.base import RemoteObject
from tests.e2e.world import World
from tests.plugins.caldav_servers import CalDAVServer

ROOM_ADDRESS = "mailto:callisto@rooms.example.com"


def request_ics(
    uid: str,
    start: datetime,
    end: datetime,
    *,
    summary: str = "Team sync",
    rrule: str | None = None,
    exdates: tuple[datetime, ...] = (),
    room: bool = True,
    created: datetime | None = None,
) -> bytes:
    """An event as a calendar client writes it when inviting the room."""
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", datetime(2024, 1, 1, tzinfo=UTC))
    event.add("CREATED", created or datetime(2024, 1, 1, tzinfo=UTC))
    event.add("DTSTART", start.astimezone(UTC))
    event.add("DTEND", end.astimezone(UTC))
    event.add("SUMMARY", summary)
    if rrule:
        event.add("RRULE", icalendar.vRecur.from_ical(rrule))
    for exdate in exdates:
        event.add("EXDATE", exdate.astimezone(UTC))
    organizer = icalendar.vCalAddress("mailto:ada@example.com")
    organizer.params["CN"] = "Ada"
    event.add("ORGANIZER", organizer)
    if room:
        attendee = icalendar.vCalAddress(ROOM_ADDRESS)
        attendee.params["CUTYPE"] = "ROOM"
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        event.add("ATTENDEE", attendee)
    calendar = icalendar.Calendar()
    calendar.add("PRODID", "-//tests//client//EN")
    calendar.add("VERSION", "2.0")
    calendar.add_component(event)
    return bytes(calendar.to_ical())


class CalendarRequests:
    """Calendar-side acts of people booking the room, for any world with ``calendar()``."""

    def invite(self, uid: str, start: datetime, end: datetime, **fields: object) -> RemoteObject:
        """A person invites the room to a meeting from their calendar client."""
        with self.calendar() as calendar:
            return calendar.create(uid, request_ics(uid, start, end, **fields))  # type: ignore[arg-type]

    def event(self, uid: str) -> tuple[str, str | None, icalendar.Calendar]:
        """(href, etag, parsed calendar) of a foreign event."""
        with self.calendar() as calendar:
            found = calendar.find_by_uid(uid)
        assert found is not None, f"event {uid} is gone"
        return found.href, found.etag, icalendar.Calendar.from_ical(found.ics)

    def edit(self, uid: str, ics: bytes) -> None:
        """The organizer changes the event."""
        href, etag, _ = self.event(uid)
        with self.calendar() as calendar:
            calendar.update(href, ics, etag)

    def remove(self, uid: str) -> None:
        """The organizer deletes the event."""
        href, etag, _ = self.event(uid)
        with self.calendar() as calendar:
            calendar.delete(href, etag)

    def room_answers(self, uid: str) -> list[str]:
        """The room attendee's PARTSTAT on each VEVENT of the event (master first)."""
        _href, _etag, calendar = self.event(uid)
        return [
            str(event["ATTENDEE"].params["PARTSTAT"]) for event in calendar.walk("VEVENT")
        ]

    def comment(self, uid: str) -> str:
        """The COMMENT (the room's reason) of the event's master."""
        _href, _etag, calendar = self.event(uid)
        return str(calendar.walk("VEVENT")[0].get("COMMENT", ""))

    def bridge_objects(self) -> list[str]:
        """UIDs of objects the bridge itself wrote."""
        with self.calendar() as calendar:
            listing = calendar.read_changes(None)
        return [o.uid for o in listing.changed if o.uid.startswith("roombridge-")]


def request_settings(buffer_before: str, buffer_after: str, customer: str | None = None) -> str:
    """The room keys of a room that takes requests from its calendar."""
    text = (
        'direction = "both"\n'
        f'buffer_before = "{buffer_before}"\n'
        f'buffer_after = "{buffer_after}"\n'
    )
    if customer is not None:
        text += f'default_customer = "{customer}"\n'
    return text


class RequestWorld(CalendarRequests, World):
    """The room takes requests from its calendar (``direction = "both"``) with room buffers."""

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        buffer_before: str = "15m",
        buffer_after: str = "15m",
    ) -> None:
        super().__init__(server, workdir, state_url=state_url)
        self.buffer_before = buffer_before
        self.buffer_after = buffer_after

    def write_config(self) -> None:
        """The base config plus the request settings of the room."""
        super().write_config()
        text = self.config_path.read_text()
        text += request_settings(self.buffer_before, self.buffer_after)
        self.config_path.write_text(text)

    def room_records(self) -> list[dict[str, object]]:
        """Live Nexudus records of the room, in start order."""
        return sorted(
            (r for r in self.emulator.bookings() if r["ResourceId"] == self.resource),
            key=lambda r: r["FromTime"],
        )


def utc(value: object) -> datetime:
    """An emulator time as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert isinstance(value, datetime), value
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def hours(n: float) -> timedelta:
    """Shorthand."""
    return timedelta(hours=n)
