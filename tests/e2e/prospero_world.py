"""An end-to-end world for Prospero: a served emulator, a real CalDAV collection, a config.

The room is the emulator's main hall (a space of the configured booking module); the module
also books a studio, and a second module books the hall too, so a bridge that picks the wrong
bookings leaves strays on the calendar. Tests act as end users and admins through the
emulator's controls, run ``roombridge sync`` in-process or as a subprocess that can be
SIGKILLed, and compare the calendar with the emulator's own truth: every pending or approved
booking of the hall exactly once, TENTATIVE or CONFIRMED, at the approved Event's times.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar

from bridge.calendars.caldav import CalDAVCalendar
from bridge.cli import main
from bridge.emulators.prospero import ProsperoEmulator
from bridge.model import BookingKey
from mappings.ical import event_uid
from mappings.prospero import BookingState
from tests.e2e.world import ROOT, SyncOutcome, hour_floor
from tests.plugins.caldav_servers import CalDAVServer

PROVIDER = "venue"
USER = "box-office@example.org"
PASSWORD = "e2e-Pr0sp3r0-Pa55word"
PASSWORD_VARIABLE = "E2E_PROSPERO_PASSWORD"

#: (uid, STATUS, start, end) of one calendar event, UTC.
Shown = tuple[str, str, datetime, datetime]


class ProsperoCalDavWorld:
    """One room: a Prospero space ⇄ a CalDAV collection, with the bridge between."""

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        max_deletions: int = 50,
    ) -> None:
        self.server = server
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        self.emulator = ProsperoEmulator(now=self.now, timezone="Europe/London")
        self.emulator.add_user(USER, PASSWORD)
        self.module = self.emulator.add_module("Venue hire")
        self.other_module = self.emulator.add_module("Festival bookings")
        self.hall = self.emulator.add_space("Main hall")
        self.studio = self.emulator.add_space("Studio")
        self.collection = server.new_collection("Main hall")
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.max_deletions = max_deletions
        self.config_path = workdir / "bridge.toml"
        self.base_url = ""

    @contextmanager
    def running(self) -> Iterator[ProsperoCalDavWorld]:
        """Serve the emulator for the duration of the block."""
        with self.emulator.serve() as served:
            self.base_url = ProsperoEmulator.api_url(served)
            self.write_config()
            yield self

    def write_config(self) -> None:
        """The bridge.toml of this world (the password comes from the environment)."""
        auth = ""
        if self.server.username:
            auth = f'username = "{self.server.username}"\npassword = "{self.server.password}"\n'
        self.config_path.write_text(
            f"""
[state]
url = "{self.state_url}"

[sync]
past_days = 30
future_days = 365
max_deletions = {self.max_deletions}

[providers.{PROVIDER}]
kind = "prospero"
base_url = "{self.base_url}"
username = "{USER}"
password = "${{{PASSWORD_VARIABLE}}}"
booking_module = "{self.module}"

[calendars.dav]
kind = "caldav"
url = "{self.server.base_url}"
{auth}
[[rooms]]
id = "hall"
name = "Main hall"
provider = "{PROVIDER}"
resource = "{self.hall}"
calendar = "dav"
calendar_id = "{self.collection}"
"""
        )

    # ----- provider side ----------------------------------------------------------------------

    def request(
        self, start: datetime, hours: float = 1, *, space: str | None = None, **fields: Any
    ) -> str:
        """An end user's booking request (PENDING) for the hall, or another space."""
        return self.emulator.submit(
            fields.pop("module", self.module),
            start,
            start + timedelta(hours=hours),
            spaces=[space or self.hall],
            **fields,
        )

    def book(self, start: datetime, hours: float = 1, **fields: Any) -> str:
        """A request for the hall, approved by the admin as asked."""
        booking = self.request(start, hours, **fields)
        self.emulator.approve(booking)
        return booking

    def tick(self, minutes: int = 5) -> None:
        """Let provider time pass."""
        self.emulator.advance_clock(timedelta(minutes=minutes))

    def compared_period(self) -> tuple[datetime, datetime]:
        """The period compared: a day inside the sync window on each side."""
        return self.now - timedelta(days=29), self.now + timedelta(days=364)

    def expected(self) -> Counter[Shown]:
        """What the calendar must show: the hall's live bookings, by status, at their times."""
        start, end = self.compared_period()
        shown: Counter[Shown] = Counter()
        for live in self.emulator.live_bookings(self.module, self.hall):
            if live.end > start and live.start < end:
                status = "CONFIRMED" if live.state is BookingState.APPROVED else "TENTATIVE"
                uid = event_uid(BookingKey(PROVIDER, live.booking))
                shown[(uid, status, live.start, live.end)] += 1
        return shown

    # ----- bridge -----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment a sync runs with."""
        return {**os.environ, PASSWORD_VARIABLE: PASSWORD}

    def sync(self, *args: str) -> SyncOutcome:
        """Run ``roombridge sync --json`` in this process."""
        os.environ[PASSWORD_VARIABLE] = PASSWORD
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(["sync", "--config", str(self.config_path), "--json", *args])
        return SyncOutcome(code, json.loads(out.getvalue()))

    def sync_process(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``roombridge sync`` as a separate process (to be killed, or waited for)."""
        command = [sys.executable, "-m", "bridge.cli", "sync", "--config", str(self.config_path)]
        return subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    # ----- calendar side ----------------------------------------------------------------------

    def calendar(self) -> CalDAVCalendar:
        """A fresh adapter on the room's collection (as a third-party client would be)."""
        return CalDAVCalendar(
            self.server.base_url,
            self.collection,
            username=self.server.username,
            password=self.server.password,
        )

    def objects(self) -> list[tuple[str, str, bytes]]:
        """(href, uid, ics) of every object in the collection."""
        with self.calendar() as calendar:
            listing = calendar.read_changes(None)
        return [(o.href, o.uid, o.ics) for o in listing.changed]

    def shown(self) -> Counter[Shown]:
        """Every event the collection holds in the compared period."""
        start, end = self.compared_period()
        shown: Counter[Shown] = Counter()
        for _href, _uid, ics in self.objects():
            for event in icalendar.Calendar.from_ical(ics).walk("VEVENT"):
                begins, ends = _utc(event["DTSTART"].dt), _utc(event["DTEND"].dt)
                if ends > start and begins < end:
                    status = str(event.get("STATUS", "CONFIRMED")).upper()
                    shown[(str(event["UID"]), status, begins, ends)] += 1
        return shown

    def assert_converged(self) -> None:
        """The calendar shows exactly the hall's live bookings, once each, nothing stray."""
        uids = Counter(uid for _href, uid, _ics in self.objects())
        duplicates = sorted(uid for uid, count in uids.items() if count > 1)
        assert not duplicates, f"duplicate UIDs on the calendar: {duplicates}"
        expected, shown = self.expected(), self.shown()
        wanted = {uid for uid, _status, _start, _end in expected}
        assert set(uids) == wanted, (
            f"stray: {sorted(set(uids) - wanted)}, missing: {sorted(wanted - set(uids))}"
        )
        assert shown == expected, (
            f"only on the calendar: {sorted((shown - expected).elements())[:5]}, "
            f"missing: {sorted((expected - shown).elements())[:5]}"
        )


def _utc(value: Any) -> datetime:
    """A calendar date-time as an aware UTC datetime."""
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
