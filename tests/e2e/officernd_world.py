"""An end-to-end world for OfficeRnD: a served emulator, a real CalDAV collection, a config.

Tests change bookings as an admin would (through the emulator's controls), run
``roombridge sync`` in-process or as a subprocess that can be SIGKILLed, and compare the
calendar with the emulator's own expansion of the room's live occurrences, buffers drawn the
way the room's buffer mode says. The comparison runs over a period a day inside the sync
window on both sides, so an occurrence at the window's edge cannot make it flaky.
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
import recurring_ical_events

from bridge.calendars.caldav import CalDAVCalendar
from bridge.cli import main
from bridge.emulators.officernd import Behaviour, Occurrence, OfficeRndEmulator
from bridge.model import BookingKey
from mappings.ical import CLEANUP_SUFFIX, SETUP_SUFFIX, event_uid
from tests.e2e.world import ROOT, SyncOutcome, hour_floor
from tests.plugins.caldav_servers import CalDAVServer

PROVIDER = "flex"
ORG = "acme"
CLIENT_ID = "roombridge-e2e"
SECRET = "e2e-0rnd-Cl13nt-Secret"
SECRET_VARIABLE = "E2E_ORND_SECRET"

#: (role, start, end) of one busy block on the calendar, UTC.
Span = tuple[str, datetime, datetime]


class OfficeRndCalDavWorld:
    """One room: an OfficeRnD resource ⇄ a CalDAV collection, with the bridge between."""

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        buffers: str = "separate",
        max_deletions: int = 50,
        behaviour: Behaviour | None = None,
    ) -> None:
        self.server = server
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        # The token endpoint's 5/minute limit is off by default: a test runs dozens of
        # one-shot `roombridge sync` processes, each of which needs its own token.
        self.emulator = OfficeRndEmulator(
            org=ORG,
            now=self.now,
            seed=7,
            behaviour=behaviour or Behaviour(token_requests_per_minute=None),
        )
        self.emulator.add_application(CLIENT_ID, SECRET)
        self.location = self.emulator.add_location("Acme London", timezone="Europe/London")
        self.resource = self.emulator.add_resource("Callisto", location=self.location)
        self.collection = server.new_collection("Callisto")
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.buffers = buffers
        self.max_deletions = max_deletions
        self.config_path = workdir / "bridge.toml"
        self.base_url = ""

    @contextmanager
    def running(self) -> Iterator[OfficeRndCalDavWorld]:
        """Serve the emulator for the duration of the block."""
        with self.emulator.serve() as served:
            self.base_url = served.base_url
            self.write_config()
            yield self

    def write_config(self) -> None:
        """The bridge.toml of this world (the client secret comes from the environment)."""
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

{self.provider_section()}
[calendars.dav]
kind = "caldav"
url = "{self.server.base_url}"
{auth}
[[rooms]]
id = "callisto"
name = "Callisto"
provider = "{PROVIDER}"
resource = "{self.resource}"
calendar = "dav"
calendar_id = "{self.collection}"
buffers = "{self.buffers}"
"""
        )

    def provider_section(self) -> str:
        """The ``[providers.flex]`` table (worlds with another calendar reuse it)."""
        return f"""[providers.{PROVIDER}]
kind = "officernd"
base_url = "{self.base_url}"
token_url = "{self.base_url}/oauth/token"
org = "{ORG}"
client_id = "{CLIENT_ID}"
client_secret = "${{{SECRET_VARIABLE}}}"
"""

    # ----- provider side ----------------------------------------------------------------------

    def book(self, start: datetime, hours: float = 1, **fields: Any) -> str:
        """Seed one booking (a series with ``rrule=``) as the OfficeRnD admin UI would."""
        return self.emulator.seed_booking(
            self.resource, start, start + timedelta(hours=hours), **fields
        )

    def tick(self, minutes: int = 5) -> None:
        """Let provider time pass (so ``modifiedAt`` moves forward)."""
        self.emulator.advance_clock(timedelta(minutes=minutes))

    def compared_period(self) -> tuple[datetime, datetime]:
        """The period compared: a day inside the sync window on each side."""
        return self.now - timedelta(days=29), self.now + timedelta(days=364)

    def live_occurrences(self) -> list[Occurrence]:
        """The room's live occurrences meeting the compared period, per the emulator."""
        start, end = self.compared_period()
        return self.emulator.live_occurrences(self.resource, start, end)

    def expected_spans(self) -> Counter[Span]:
        """The busy blocks the calendar must show, per the room's buffer mode."""
        start, end = self.compared_period()
        spans: Counter[Span] = Counter()
        for occurrence in self.live_occurrences():
            for span in _drawn(occurrence, self.buffers):
                if span[1] < end and span[2] > start:
                    spans[span] += 1
        return spans

    def expected_uids(self) -> set[str]:
        """The UIDs the calendar must hold: each live booking's, plus its buffer objects."""
        uids: set[str] = set()
        for occurrence in self.live_occurrences():
            uid = event_uid(BookingKey(PROVIDER, occurrence.booking))
            uids.add(uid)
            if self.buffers == "separate" and occurrence.before:
                uids.add(uid + SETUP_SUFFIX)
            if self.buffers == "separate" and occurrence.after:
                uids.add(uid + CLEANUP_SUFFIX)
        return uids

    # ----- bridge -----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment a sync runs with."""
        return {**os.environ, SECRET_VARIABLE: SECRET}

    def sync(self, *args: str) -> SyncOutcome:
        """Run ``roombridge sync --json`` in this process."""
        os.environ[SECRET_VARIABLE] = SECRET
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

    def calendar_spans(self) -> Counter[Span]:
        """Every busy block the collection shows in the compared period, by role."""
        start, end = self.compared_period()
        spans: Counter[Span] = Counter()
        for _href, uid, ics in self.objects():
            role = _role_of(uid)
            calendar = icalendar.Calendar.from_ical(ics)
            for event in recurring_ical_events.of(calendar).between(start, end):
                if str(event.get("STATUS", "CONFIRMED")).upper() == "CANCELLED":
                    continue
                spans[(role, _utc(event["DTSTART"].dt), _utc(event["DTEND"].dt))] += 1
        return spans

    def assert_converged(self) -> None:
        """The calendar shows exactly the provider's live occurrences, once, nothing stray."""
        uids = Counter(uid for _href, uid, _ics in self.objects())
        duplicates = sorted(uid for uid, count in uids.items() if count > 1)
        assert not duplicates, f"duplicate UIDs on the calendar: {duplicates}"
        assert set(uids) == self.expected_uids(), (
            f"stray: {sorted(set(uids) - self.expected_uids())}, "
            f"missing: {sorted(self.expected_uids() - set(uids))}"
        )
        expected, shown = self.expected_spans(), self.calendar_spans()
        assert shown == expected, (
            f"only on the calendar: {sorted((shown - expected).elements())[:5]}, "
            f"missing: {sorted((expected - shown).elements())[:5]}"
        )


def _drawn(occurrence: Occurrence, mode: str) -> list[Span]:
    """How one occurrence is drawn on the calendar under a buffer mode."""
    start, end = occurrence.start, occurrence.end
    before, after = occurrence.before, occurrence.after
    if mode == "hidden":
        return [("booking", start, end)]
    if mode == "merged":
        return [("booking", start - before, end + after)]
    spans = [("booking", start, end)]
    if before:
        spans.append(("setup", start - before, start))
    if after:
        spans.append(("cleanup", end, end + after))
    return spans


def _role_of(uid: str) -> str:
    """What a calendar object stands for, from its UID."""
    if uid.endswith(SETUP_SUFFIX):
        return "setup"
    if uid.endswith(CLEANUP_SUFFIX):
        return "cleanup"
    return "booking"


def _utc(value: Any) -> datetime:
    """A calendar date-time as an aware UTC datetime."""
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
