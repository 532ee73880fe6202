"""A Hypothesis state machine: random provider edits, third-party calendar edits and syncs.

After every sync the calendar must show exactly the provider's live bookings (each once, with
its occurrences), and events that other people put on the calendar must be left alone.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bridge.providers.errors import ProviderConflict
from tests.e2e.world import World
from tests.plugins.caldav_servers import CalDAVServer
from tests.plugins.postgres import fresh_postgres_database

FOREIGN_EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Thunderbird//EN\r\nBEGIN:VEVENT\r\n"
    "UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20270105T100000Z\r\n"
    "DTEND:20270105T110000Z\r\nSUMMARY:Someone else's meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def machine_for(
    server: CalDAVServer, workdirs: pytest.TempPathFactory, *, postgres: bool = False
) -> type:
    """The state machine class bound to one CalDAV server (and SQLite, or PostgreSQL)."""

    class BridgeConvergence(RuleBasedStateMachine):
        """Provider and calendar edits interleaved with syncs."""

        def __init__(self) -> None:
            super().__init__()
            workdir = Path(workdirs.mktemp("machine"))
            self.database = fresh_postgres_database() if postgres else None
            state_url = self.database.__enter__() if self.database else None
            self.world = World(server, workdir, state_url=state_url)
            self.running = self.world.running()
            self.running.__enter__()
            self.foreign: set[str] = set()
            self.synced = False

        def teardown(self) -> None:
            # Every run ends with one more pass, which must converge whatever came before.
            try:
                self.sync(full=False)
            finally:
                self.running.__exit__(None, None, None)
                if self.database is not None:
                    self.database.__exit__(None, None, None)

        @initialize(count=st.integers(0, 4))
        def seed(self, count: int) -> None:
            for index in range(count):
                self.world.book(self.world.now + timedelta(days=index + 1, hours=index))

        def singles(self) -> list[int]:
            return [
                r["Id"] for r in self.world.emulator.bookings() if not r.get("RepeatSeriesUniqueId")
            ]

        @rule(day=st.integers(1, 200), hour=st.integers(0, 20), hours=st.sampled_from([0.5, 1, 3]))
        def book(self, day: int, hour: int, hours: float) -> None:
            self.world.book(self.world.now + timedelta(days=day, hours=hour), hours=hours)
            self.world.tick()

        @rule(weeks=st.integers(2, 10), day=st.integers(1, 30))
        def book_series(self, weeks: int, day: int) -> None:
            start = self.world.now + timedelta(days=day, hours=7)
            with self.world.client() as client, contextlib.suppress(ProviderConflict):
                # Nexudus refuses a series overlapping a booking: a real refusal, not a failure.
                client.create_booking(
                    {
                        "ResourceId": self.world.resource,
                        "FromTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "ToTime": (start + timedelta(minutes=45)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "RepeatBooking": True,
                        "Repeats": 2,
                        "RepeatEvery": 1,
                        "RepeatUntil": (start + timedelta(weeks=weeks)).strftime(
                            "%Y-%m-%dT%H:%M:%S"
                        ),
                    }
                )
            self.world.tick()

        @rule(data=st.data(), shift=st.integers(-48, 48))
        def move_any(self, data: st.DataObject, shift: int) -> None:
            records = self.world.emulator.bookings()
            if not records:
                return
            record = data.draw(st.sampled_from(records))
            start = self.world.now + timedelta(days=2, hours=shift + 48)
            self.world.emulator.edit_booking(
                record["Id"], FromTime=start, ToTime=start + timedelta(hours=1)
            )
            self.world.tick()

        @rule(data=st.data())
        def cancel_any(self, data: st.DataObject) -> None:
            records = self.world.emulator.bookings()
            if records:
                self.world.emulator.cancel_booking(data.draw(st.sampled_from(records))["Id"])
                self.world.tick()

        @rule(data=st.data(), text=st.text(min_size=1, max_size=30))
        def retitle(self, data: st.DataObject, text: str) -> None:
            ids = self.singles()
            if ids:
                self.world.emulator.edit_booking(data.draw(st.sampled_from(ids)), Notes=text)
                self.world.tick()

        @precondition(lambda self: self.synced)
        @rule(data=st.data())
        def third_party_edit(self, data: st.DataObject) -> None:
            ours = [o for o in self.world.objects() if o[1].startswith("roombridge-")]
            if ours:
                href, _uid, ics = data.draw(st.sampled_from(ours))
                with self.world.calendar() as calendar:
                    calendar.update(href, ics.replace(b"SUMMARY:", b"SUMMARY:Edited "), None)

        @precondition(lambda self: self.synced)
        @rule(data=st.data())
        def third_party_delete(self, data: st.DataObject) -> None:
            ours = [o for o in self.world.objects() if o[1].startswith("roombridge-")]
            if ours:
                href, _uid, _ics = data.draw(st.sampled_from(ours))
                with self.world.calendar() as calendar:
                    calendar.delete(href, None)

        @rule(name=st.integers(0, 10**6))
        def third_party_adds_its_own_event(self, name: int) -> None:
            uid = f"thunderbird-{name}@example.org"
            if uid in self.foreign:
                return
            with self.world.calendar() as calendar:
                calendar.create(uid, FOREIGN_EVENT.format(uid=uid).encode())
            self.foreign.add(uid)

        @rule(full=st.booleans())
        def sync(self, full: bool) -> None:
            outcome = self.world.sync(*(["--full"] if full else []))
            assert outcome.code == 0, outcome.document
            self.synced = True
            self.world.assert_converged()
            present = {uid for _href, uid, _ics in self.world.objects()}
            assert self.foreign <= present, "the bridge touched someone else's event"

    return BridgeConvergence


MACHINE_SETTINGS = settings(
    max_examples=15,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.mark.slow
def test_random_edits_and_syncs_converge(
    caldav_server: CalDAVServer, tmp_path_factory: pytest.TempPathFactory
):
    run_state_machine_as_test(
        machine_for(caldav_server, tmp_path_factory), settings=MACHINE_SETTINGS
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_random_edits_and_syncs_converge_with_the_postgresql_store(
    radicale_server: CalDAVServer, tmp_path_factory: pytest.TempPathFactory
):
    run_state_machine_as_test(
        machine_for(radicale_server, tmp_path_factory, postgres=True), settings=MACHINE_SETTINGS
    )
