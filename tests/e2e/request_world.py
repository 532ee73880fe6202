"""A world where people book the room from a calendar: foreign events in the room collection."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

from bridge.calendars.base import RemoteObject
from bridge.calendars.caldav import CalDAVCalendar
from bridge.config import load_config
from bridge.runtime import Runtime
from bridge.sync.engine import PassOptions, RoomResult
from bridge.sync.intake import RequestIntake
from tests.e2e.nexudus_portal_world import PortalCalDavWorld
from tests.e2e.request_providers import request_room_keys
from tests.e2e.world import PASSWORD, World
from tests.plugins.caldav_servers import CalDAVServer

ROOM_ADDRESS = "mailto:callisto@rooms.example.com"
ORGANIZER = "ada@example.com"


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
    organizer: str = ORGANIZER,
    attendees: tuple[str, ...] = (),
) -> bytes:
    """An event as a calendar client writes it when inviting the room (and ``attendees``)."""
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
    address = icalendar.vCalAddress(f"mailto:{organizer}")
    address.params["CN"] = organizer.split("@")[0].title()
    event.add("ORGANIZER", address)
    for email in attendees:
        person = icalendar.vCalAddress(f"mailto:{email}")
        person.params["CUTYPE"] = "INDIVIDUAL"
        person.params["PARTSTAT"] = "NEEDS-ACTION"
        event.add("ATTENDEE", person)
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


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def crash_after_provider_create(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one pass that dies right after the provider create, before the event is tagged."""

    def killed(*_args: object, **_kwargs: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(RequestIntake, "_accept", killed)
        with pytest.raises(Killed):
            world.sync()


def refused_move(world: Any, uid: str, kept: datetime) -> None:
    """Move ``uid`` onto a slot the provider fills first; the event must stay at ``kept``."""
    blocker = kept + timedelta(days=1)
    world.book(blocker)
    world.sync()
    world.edit(uid, request_ics(uid, blocker, blocker + timedelta(hours=1)))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    _href, _etag, calendar = world.request_event(uid)
    event = calendar.walk("VEVENT")[0]
    assert utc(event.decoded("DTSTART")) == kept
    assert "change refused" in str(event["COMMENT"])


def race_for_one_slot(world: Any, start: datetime) -> None:
    """Two requests for one slot in one pass: the earlier asker wins, the other is declined."""
    early = world.now - timedelta(days=1)
    world.invite("b-late@client", start, start + timedelta(hours=1), created=early + hours(1))
    world.invite("a-early@client", start, start + timedelta(hours=1), created=early)
    outcome = world.sync()
    assert outcome.room["declined"] == 1, outcome.document
    assert world.room_answers("b-late@client") == ["DECLINED"]


class RequestSettings:
    """Adds the room's request settings to the config a world writes.

    ``buffer_before``/``buffer_after`` are the room's default buffers, ``customer`` its
    ``default_customer``; mixed in before the world whose ``write_config`` it extends.
    """

    buffer_before = "15m"
    buffer_after = "15m"
    customer: str | None = None

    def write_config(self) -> None:
        """The world's config plus the request settings of the room."""
        super().write_config()  # type: ignore[misc]
        path: Path = self.config_path  # type: ignore[attr-defined]
        text = path.read_text()
        path.write_text(text + request_room_keys(self.buffer_before, self.buffer_after,
                                                self.customer))


class CalendarRequests:
    """Organizers acting in the room collection: invite the room, edit, delete.

    Mixed into a world that provides ``calendar()``, the adapter on the room's collection.
    """

    calendar: Callable[[], CalDAVCalendar]

    def invite(self, uid: str, start: datetime, end: datetime, **fields: object) -> RemoteObject:
        """A person invites the room to a meeting from their calendar client."""
        with self.calendar() as calendar:
            return calendar.create(uid, request_ics(uid, start, end, **fields))  # type: ignore[arg-type]

    def request_event(self, uid: str) -> tuple[str, str | None, icalendar.Calendar]:
        """(href, etag, parsed calendar) of a foreign event."""
        with self.calendar() as calendar:
            found = calendar.find_by_uid(uid)
        assert found is not None, f"event {uid} is gone"
        return found.href, found.etag, icalendar.Calendar.from_ical(found.ics)

    def edit(self, uid: str, ics: bytes) -> None:
        """The organizer changes the event."""
        href, etag, _ = self.request_event(uid)
        with self.calendar() as calendar:
            calendar.update(href, ics, etag)

    def remove(self, uid: str) -> None:
        """The organizer deletes the event."""
        href, etag, _ = self.request_event(uid)
        with self.calendar() as calendar:
            calendar.delete(href, etag)

    def room_answers(self, uid: str) -> list[str]:
        """The room attendee's PARTSTAT on each VEVENT of the event (master first)."""
        _href, _etag, calendar = self.request_event(uid)
        return [
            str(event["ATTENDEE"].params["PARTSTAT"]) for event in calendar.walk("VEVENT")
        ]

    def comment(self, uid: str) -> str:
        """The COMMENT (the room's reason) of the event's master."""
        _href, _etag, calendar = self.request_event(uid)
        return str(calendar.walk("VEVENT")[0].get("COMMENT", ""))

    def assert_declined_for_a_buffer(self, uid: str, *hidden: str) -> None:
        """The room declined ``uid`` naming the slot and its buffer, and none of ``hidden``."""
        assert self.room_answers(uid) == ["DECLINED"]
        comment = self.comment(uid)
        assert "the room is booked" in comment and "setup/cleanup" in comment, comment
        for text in hidden:
            assert text.lower() not in comment.lower(), comment

    def bridge_objects(self) -> list[str]:
        """UIDs of objects the bridge itself wrote."""
        objects = self.objects()  # type: ignore[attr-defined]
        return [uid for _href, uid, _ics in objects if uid.startswith("roombridge-")]


class RequestWorld(World, CalendarRequests):
    """The room takes requests from its calendar (``direction = "both"``) with room buffers."""

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        buffer_before: str = "15m",
        buffer_after: str = "15m",
        default_customer: str | None = None,
        future_days: int = 365,
    ) -> None:
        super().__init__(server, workdir, state_url=state_url)
        self.buffer_before = buffer_before
        self.buffer_after = buffer_after
        self.default_customer = default_customer
        self.future_days = future_days
        # The usual organizer is a Nexudus customer, so her requests can be billed.
        self.ada = self.emulator.add_coworker("Ada Lovelace", ORGANIZER)

    def write_config(self) -> None:
        """The base config plus the request settings of the room."""
        super().write_config()
        text = self.config_path.read_text()
        text = text.replace("future_days = 365", f"future_days = {self.future_days}")
        text += request_room_keys(self.buffer_before, self.buffer_after, self.default_customer)
        self.config_path.write_text(text)

    def sync_at(self, now: datetime) -> RoomResult:
        """One pass of the room as if the bridge's clock (and Nexudus's) read ``now``."""
        self.emulator.set_clock(now)
        os.environ["E2E_NEXUDUS_PASSWORD"] = PASSWORD
        config = load_config(self.config_path)
        with Runtime(config, clock=lambda: now) as runtime:
            options = PassOptions(window=runtime.window(), max_deletions=50)
            return runtime.sync_room(config.rooms[0], options)

    def room_records(self) -> list[dict[str, object]]:
        """Live Nexudus records of the room, in start order."""
        return sorted(
            (r for r in self.emulator.bookings() if r["ResourceId"] == self.resource),
            key=lambda r: r["FromTime"],
        )

def booking_tag(ics: bytes) -> str | None:
    """The X-ROOMBRIDGE-KEY an event (as a backend reads it) carries, if any."""
    value = icalendar.Calendar.from_ical(ics).walk("VEVENT")[0].get("X-ROOMBRIDGE-KEY")
    return None if value is None else str(value)


def utc(value: object) -> datetime:
    """An emulator time as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert isinstance(value, datetime), value
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def hours(n: float) -> timedelta:
    """Shorthand."""
    return timedelta(hours=n)


class PortalRequestWorld(PortalCalDavWorld, CalendarRequests):
    """A portal room taking requests from its calendar (``direction = "both"``)."""

    def write_config(self) -> None:
        """The portal world's config with the room taking requests."""
        super().write_config()
        self.config_path.write_text(self.config_path.read_text() + 'direction = "both"\n')

    def room_bookings(self) -> list[tuple[datetime, datetime, str | None]]:
        """(start, end, notes) of the room's portal bookings, in start order."""
        return sorted(
            (b.start, b.end, b.notes)
            for b in self.emulator.bookings()
            if b.resource_id == self.resource
        )
