"""A world where people book a Microsoft 365 room by inviting it from Outlook.

The organizer's meetings are made in the Graph emulator as Outlook would; the room mailbox
processes them natively (AutoAccept: accepted when its own calendar is free) and the bridge
reads the room's copies as booking requests for Nexudus.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.calendars.office365 import build_office365_calendar
from bridge.config import Office365Config, load_config
from bridge.emulators.graph import Event
from bridge.emulators.identity import IdentityEmulator
from bridge.emulators.server import RunningServer, SwappableApp
from bridge.sources.writers import request_marker
from tests.e2e.office365_world import Office365World
from tests.e2e.request_providers import Held, nexudus_held, request_room_keys
from tests.e2e.request_world import booking_tag
from tests.e2e.world import PASSWORD
from tests.plugins.graph import GRAPH_SECRET, ROOM, USER

WRITES = frozenset({"POST", "PATCH", "DELETE"})
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Office365RequestWorld(Office365World):
    """The room mailbox takes requests (``direction = "both"``) with room buffers."""

    def __init__(
        self,
        graph_server: tuple[SwappableApp, RunningServer],
        identity: IdentityEmulator,
        ca_file: Path,
        workdir: Path,
        *,
        state_url: str | None = None,
        buffer_before: str = "15m",
        buffer_after: str = "15m",
    ) -> None:
        super().__init__(graph_server, identity, ca_file, workdir, state_url=state_url)
        self.graph.add_mailbox(USER, "Ada")
        # Ada, who organizes every invitation, is a Nexudus customer: her requests can be billed.
        self.nexudus.add_coworker("Ada Lovelace", USER)
        self.request_buffers = (buffer_before, buffer_after)

    def write_config(self) -> None:
        """The base config plus the request settings of the room."""
        super().write_config()
        text = self.config_path.read_text()
        text += request_room_keys(*self.request_buffers)
        self.config_path.write_text(text)

    def held(self) -> list[Held]:
        """Live Nexudus records of the room, in start order."""
        return nexudus_held(self.nexudus, str(self.resource))

    def book_taken(self, start: datetime, end: datetime, *, booker: str) -> None:
        """Someone books the room directly in Nexudus."""
        self.nexudus.seed_booking(self.resource, start, end, CoworkerFullName=booker)

    # ----- the organizer, in Outlook ------------------------------------------------------

    def invite(self, start: datetime, end: datetime, *, weeks: int = 0) -> str:
        """Ada invites the room (weekly for ``weeks`` occurrences); the meeting's id."""
        body: dict[str, Any] = {
            "subject": "Team sync",
            "start": _zoned(start),
            "end": _zoned(end),
            "attendees": [
                {"type": "resource", "emailAddress": {"address": ROOM, "name": "Callisto"}}
            ],
        }
        if weeks:
            body["recurrence"] = {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [
                    DAYS[start.astimezone(UTC).weekday()]
                ]},
                "range": {
                    "type": "numbered",
                    "startDate": start.astimezone(UTC).date().isoformat(),
                    "numberOfOccurrences": weeks,
                },
            }
        return self.graph.create_event(USER, body)

    def move(self, meeting: str, start: datetime, end: datetime) -> None:
        """Ada moves the meeting."""
        self.graph.patch_event(USER, meeting, {"start": _zoned(start), "end": _zoned(end)})

    def cancel_occurrence(self, meeting: str, original: datetime) -> None:
        """Ada deletes one occurrence of the series."""
        from bridge.emulators.graph import occurrence_id

        self.graph.delete_event(USER, occurrence_id(meeting, original.astimezone(UTC)))

    def remove(self, meeting: str) -> None:
        """Ada deletes the meeting (the whole series)."""
        self.graph.delete_event(USER, meeting)

    # ----- what people see --------------------------------------------------------------------

    def _organizer_event(self, meeting: str) -> Event:
        return next(e for e in self.graph.events(USER) if e.id == meeting)

    def answer(self, meeting: str) -> tuple[str, str]:
        """The room's answer (organizer's event) and the comment of its last response."""
        self.graph.settle()
        event = self._organizer_event(meeting)
        status = str(event.fields["attendees"][0].get("status", {}).get("response", "none"))
        replies = [r for r in self.graph.replies(USER) if r.event_id == meeting
                   and r.original is None]
        return status, replies[-1].comment if replies else ""

    def occurrence_answers(self, meeting: str) -> dict[datetime, str]:
        """The room's answer to each occurrence (by original start), as the organizer sees it."""
        self.graph.settle()
        event = self._organizer_event(meeting)
        far = self.now + timedelta(days=365)
        answers = {}
        for original in event.live_instances(self.now - timedelta(days=1), far):
            instance = event.exceptions.get(original)
            attendees = (instance.fields.get("attendees") if instance else None) or event.fields[
                "attendees"
            ]
            answers[original] = str(attendees[0].get("status", {}).get("response", "none"))
        return answers

    def occurrence_reasons(self, meeting: str) -> list[str]:
        """The comments of the room's per-occurrence responses."""
        return [r.comment for r in self.graph.replies(USER)
                if r.event_id == meeting and r.original is not None]

    def marker(self, meeting: str) -> str:
        """The provider marker of the bookings made for the meeting."""
        return request_marker(self._organizer_event(meeting).ical_uid)

    def tags(self, meeting: str) -> str | None:
        """The X-ROOMBRIDGE-KEY the bridge's own backend reads on the room's copy."""
        uid = self._organizer_event(meeting).ical_uid
        os.environ["E2E_M365_SECRET"] = GRAPH_SECRET
        os.environ["E2E_NEXUDUS_PASSWORD"] = PASSWORD
        config = load_config(self.config_path).calendars["m365"]
        assert isinstance(config, Office365Config)
        calendar = build_office365_calendar(config, ROOM)
        try:
            listing = calendar.read_changes(None)
        finally:
            calendar.close()
        found = [remote.ics for remote in listing.changed if remote.uid == uid]
        return booking_tag(found[0]) if found else None

    def calendar_writes(self) -> int:
        """Write requests the Graph emulator has answered so far."""
        return sum(1 for request in self.graph.requests if request.method in WRITES)


def _zoned(instant: datetime) -> dict[str, str]:
    """A Graph dateTimeTimeZone in UTC."""
    return {"dateTime": instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}
