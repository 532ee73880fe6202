"""A Prospero room that takes bookings from its calendar (issue 8): requests become submits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.sources.prospero_writer import marker_of
from bridge.sources.writers import request_marker
from mappings.prospero import BookingState
from tests.e2e.prospero_world import ProsperoCalDavWorld
from tests.e2e.request_world import CalendarRequests, RequestSettings
from tests.plugins.caldav_servers import CalDAVServer


class ProsperoRequestWorld(RequestSettings, CalendarRequests, ProsperoCalDavWorld):
    """The hall ⇄ a CalDAV collection, with ``direction = "both"`` and room buffers."""

    def __init__(
        self, server: CalDAVServer, workdir: Path, *, state_url: str | None = None
    ) -> None:
        super().__init__(server, workdir, state_url=state_url)
        self.future_days = 365

    def write_config(self) -> None:
        """The request config; a shorter window stands for an earlier day (see tests)."""
        super().write_config()
        text = self.config_path.read_text()
        self.config_path.write_text(
            text.replace("future_days = 365", f"future_days = {self.future_days}")
        )

    def requested(self, uid: str, *, live: bool = True) -> list[dict[str, Any]]:
        """The Bookings submitted for the calendar event ``uid`` (live ones), by start."""
        marker = request_marker(uid)
        found = [
            booking
            for booking in self.emulator.bookings()
            if marker_of(booking) == marker
            and (
                not live
                or booking["bookingStatus"] in (BookingState.PENDING, BookingState.APPROVED)
            )
        ]
        return sorted(found, key=lambda booking: booking["event"]["start"])
