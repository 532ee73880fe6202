"""A world where people book a Google room by inviting it: organizer → room copy → bridge.

An organizer's meetings are made in the Google emulator as a person would (the room answers
them natively: it accepts when its own calendar is free); the bridge reads the room's copies
as booking requests and turns them into bookings of a swappable provider
(``provider``: a factory of :class:`~tests.e2e.request_providers.RequestProvider` given the
world's "now"; Nexudus by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.calendars.google import GoogleCalendar, RequestBudget, build_google_calendar
from bridge.config import GoogleConfig
from bridge.emulators.google import GoogleCalendarEmulator, instance_id
from bridge.sources.writers import request_marker
from tests.e2e.request_providers import Held, NexudusRequests, RequestProvider, request_room_keys
from tests.e2e.request_world import booking_tag
from tests.e2e.world import SyncOutcome, hour_floor, sync_in_process

ADMIN = "rooms-admin@example.com"
ORGANIZER = "ada@example.com"
ROOM_CALENDAR = "c_188callisto@resource.calendar.google.com"
SERVICE_ACCOUNT = "roombridge@acme-rooms.iam.gserviceaccount.com"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class GoogleRequestWorld:
    """One Google resource calendar taking requests (``direction = "both"``) for a provider."""

    def __init__(
        self,
        workdir: Path,
        *,
        provider: Callable[[datetime], RequestProvider] = NexudusRequests,
        state_url: str | None = None,
        buffer_before: str = "15m",
        buffer_after: str = "15m",
    ) -> None:
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        self.provider = provider(self.now)
        self.google = GoogleCalendarEmulator(seed=11)
        self.google.add_user(ADMIN)
        self.google.add_user(ORGANIZER)
        self.room = self.google.add_room(ROOM_CALENDAR, "Callisto", managers=[ADMIN])
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.buffers = (buffer_before, buffer_after)
        self.config_path = workdir / "bridge.toml"
        self.key_file = workdir / "service-account.json"

    @contextmanager
    def running(self) -> Iterator[GoogleRequestWorld]:
        """Serve both emulators for the duration of the block."""
        with self.provider.serve(), self.google.serve():
            key = self.google.create_service_account(
                SERVICE_ACCOUNT, subjects=[ADMIN], key_bits=1024
            )
            self.key_file.write_text(json.dumps(key))
            self.write_config()
            yield self

    def write_config(self) -> None:
        """The bridge.toml of this world."""
        self.config_path.write_text(
            f"""
[state]
url = "{self.state_url}"

[sync]
past_days = 30
future_days = 365

{self.provider.toml()}
[calendars.workspace]
kind = "google"
service_account_file = "{self.key_file.name}"
subject = "{ADMIN}"
api_endpoint = "{self.google.base_url}/calendar/v3/"

[[rooms]]
id = "callisto"
name = "Callisto"
provider = "{self.provider.name}"
resource = "{self.provider.resource}"
calendar = "workspace"
calendar_id = "{self.room}"
"""
            + request_room_keys(*self.buffers, self.provider.customer)
        )

    def sync(self) -> SyncOutcome:
        """Run ``roombridge sync --json`` in this process."""
        return sync_in_process(self.config_path, self.provider.environment())

    def held(self) -> list[Held]:
        """The provider's live bookings of the room."""
        return self.provider.held()

    def book_taken(self, start: datetime, end: datetime, *, booker: str) -> None:
        """Someone books the room directly in the provider."""
        self.provider.book(start, end, booker=booker)

    # ----- the organizer, in Google Calendar ------------------------------------------------

    def invite(self, start: datetime, end: datetime, *, weeks: int = 0) -> str:
        """Ada invites the room to a meeting (weekly for ``weeks`` occurrences); its id."""
        body: dict[str, Any] = {
            "summary": "Team sync",
            "start": {"dateTime": start.isoformat(), "timeZone": "Europe/London"},
            "end": {"dateTime": end.isoformat(), "timeZone": "Europe/London"},
            "attendees": [
                {"email": ORGANIZER, "displayName": "Ada"},
                {"email": self.room, "resource": True},
            ],
        }
        if weeks:
            body["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={weeks}"]
        return str(self.google.seed_event(ORGANIZER, body, user=ORGANIZER)["id"])

    def move(self, meeting: str, start: datetime, end: datetime) -> None:
        """Ada moves the meeting."""
        self.google.edit_event(
            ORGANIZER,
            meeting,
            start={"dateTime": start.isoformat(), "timeZone": "Europe/London"},
            end={"dateTime": end.isoformat(), "timeZone": "Europe/London"},
        )

    def cancel_occurrence(self, meeting: str, original: datetime) -> None:
        """Ada deletes one occurrence of the series."""
        self.google.delete_event(ORGANIZER, instance_id(meeting, original, False))

    def remove(self, meeting: str) -> None:
        """Ada deletes the meeting (the whole series)."""
        self.google.delete_event(ORGANIZER, meeting)

    # ----- what people see --------------------------------------------------------------------

    def answer(self, meeting: str) -> tuple[str, str]:
        """The room's answer and comment, as the organizer's event shows them."""
        event = self.google.event(ORGANIZER, meeting)
        assert event is not None
        room = next(a for a in event["attendees"] if a["email"] == self.room)
        return str(room.get("responseStatus")), str(room.get("comment", ""))

    def occurrence_answers(self, meeting: str) -> dict[datetime, str]:
        """The room's answer to each occurrence (by original start), as the organizer sees it."""
        answers = {}
        for item in self.google.expanded(ORGANIZER):
            if item.get("recurringEventId") != meeting:
                continue
            original = datetime.fromisoformat(item["originalStartTime"]["dateTime"])
            room = next(a for a in item["attendees"] if a["email"] == self.room)
            answers[original.astimezone(UTC)] = str(room.get("responseStatus"))
        return answers

    def marker(self, meeting: str) -> str:
        """The provider marker of the bookings made for the meeting."""
        event = self.google.event(ORGANIZER, meeting)
        assert event is not None
        return request_marker(str(event["iCalUID"]))

    def tags(self, meeting: str) -> str | None:
        """The X-ROOMBRIDGE-KEY the bridge's own backend reads on the room's copy."""
        with self.calendar() as calendar:
            listing = calendar.read_changes(None)
        found = [remote.ics for remote in listing.changed if remote.href == meeting]
        return booking_tag(found[0]) if found else None

    def calendar_writes(self) -> int:
        """Calendar write requests the Google emulator has answered so far (not token grants)."""
        return sum(
            1
            for request in self.google.requests
            if request.method in WRITES and request.route.startswith("/calendar/")
        )

    def calendar(self) -> GoogleCalendar:
        """A fresh backend on the room calendar."""
        config = GoogleConfig(
            name="workspace",
            service_account_file=self.key_file,
            subject=ADMIN,
            api_endpoint=f"{self.google.base_url}/calendar/v3/",
        )
        return build_google_calendar(config, self.room, budget=RequestBudget(100_000))

