"""An OfficeRnD room that takes bookings from its calendar (issue 8).

:class:`OfficeRndRequests` holds the provider-side view any calendar's request world needs
(the room's bookings, who made them, their occurrences); :class:`OfficeRndRequestWorld` joins
it with a real CalDAV collection. A world with another calendar (Google, Microsoft 365) reuses
:class:`OfficeRndRequests` and ``OfficeRndCalDavWorld.provider_section``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.emulators.officernd import OfficeRndEmulator
from bridge.sources.writers import request_marker
from tests.e2e.officernd_world import OfficeRndCalDavWorld
from tests.e2e.request_world import CalendarRequests, RequestSettings
from tests.plugins.caldav_servers import CalDAVServer

#: The company billed for bookings made from the calendar.
CUSTOMER = "company-calendar"


class OfficeRndRequests:
    """What OfficeRnD holds for a room (needs ``emulator`` and ``resource``)."""

    emulator: OfficeRndEmulator
    resource: str

    def room_bookings(self) -> list[dict[str, Any]]:
        """The room's live bookings, in start order."""
        return sorted(
            (
                b
                for b in self.emulator.bookings()
                if b["resource"] == self.resource and not b["isCancelled"]
            ),
            key=lambda b: b["start"],
        )

    def requested(self, uid: str) -> list[dict[str, Any]]:
        """The room's live bookings made for the calendar event ``uid``."""
        marker = request_marker(uid)
        return [b for b in self.room_bookings() if b["source"] == marker]

    def occurrence_starts(self, booking_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Where the live occurrences of one booking start in [start, end) (UTC)."""
        return sorted(
            o.start
            for o in self.emulator.live_occurrences(self.resource, start, end)
            if o.booking == booking_id
        )


class OfficeRndRequestWorld(
    RequestSettings, CalendarRequests, OfficeRndRequests, OfficeRndCalDavWorld
):
    """An OfficeRnD room ⇄ CalDAV collection, with ``direction = "both"`` and room buffers."""


    customer = CUSTOMER

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        customer: str | None = CUSTOMER,
    ) -> None:
        super().__init__(server, workdir, state_url=state_url)
        self.customer = customer
