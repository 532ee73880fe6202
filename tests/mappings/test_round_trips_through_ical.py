"""provider → booking → iCalendar → booking → provider is the identity, for every provider.

Each provider's own module proves provider → booking → provider, and ``test_ical`` proves
booking → iCalendar → booking over generated bookings. This module checks the whole chain
on the bookings the providers actually produce (their own generators and seed fixtures), so
a field a provider fills in a way the iCalendar generator never tries cannot slip through.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bridge.model import Booking, BufferMode, Privacy
from mappings import google, graph, nexudus, officernd, prospero, zenspace
from mappings.ical import _FORBIDDEN_CONTROLS, bookings_to_calendar, calendar_to_bookings
from tests.mappings import test_google, test_graph, test_officernd, test_prospero, test_zenspace
from tests.mappings.strategies import GeneratedSeries, nexudus_series

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MODES = st.sampled_from(BufferMode)


def carryable(value: object) -> bool:
    """Whether every string in ``value`` is text iCalendar can carry.

    Control characters and bare CRs cannot be written (``mappings.ical`` drops them and turns
    CR into LF; ``test_ical`` proves that); the identity is claimed for everything else.
    """
    if isinstance(value, str):
        return "\r" not in value and not _FORBIDDEN_CONTROLS.search(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(carryable(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, tuple | list):
        return all(carryable(item) for item in value)
    return True


def generated_through_ical(booking: Booking, mode: BufferMode) -> Booking:
    """:func:`through_ical` for a generated booking holding only text iCalendar can carry."""
    assume(carryable(booking))
    return through_ical(booking, mode)


def through_ical(booking: Booking, mode: BufferMode) -> Booking:
    """The booking written as a full-privacy calendar and read back."""
    ics = bookings_to_calendar([booking], privacy=Privacy.FULL, buffers=mode)
    [back] = calendar_to_bookings(ics)
    return back


def json_of(value: object) -> Any:
    """A provider body as it would travel (through JSON), for comparison."""
    return json.loads(json.dumps(value, default=str))


@SETTINGS
@given(st.booleans().flatmap(lambda edited: nexudus_series(edited=edited)), MODES)
def test_nexudus_series_round_trip(series: GeneratedSeries, mode: BufferMode) -> None:
    [booking] = nexudus.from_json(series.records, timezone=series.zone)
    back = generated_through_ical(booking, mode)
    assert back == booking
    assert json_of(nexudus.to_json(back, window=series.window)) == json_of(
        nexudus.to_json(booking, window=series.window)
    )


def test_nexudus_fixtures_round_trip() -> None:
    for name in ("admin-single-record.json", "admin-series-weekly-london.json"):
        data = json.loads((FIXTURES / "nexudus" / name).read_text())
        for booking in nexudus.from_json(data, timezone="Europe/London"):
            for mode in BufferMode:
                assert through_ical(booking, mode) == booking, (name, mode)


@SETTINGS
@given(test_officernd.series_objects(), MODES)
def test_officernd_round_trip(obj: dict[str, Any], mode: BufferMode) -> None:
    booking = test_officernd.single(obj)
    back = generated_through_ical(booking, mode)
    assert back == booking
    assert officernd.to_json(back) == officernd.to_json(booking)


@SETTINGS
@given(test_prospero.prospero_bookings(), st.sampled_from(("UTC", "Australia/Sydney")), MODES)
def test_prospero_round_trip(case: tuple[dict[str, Any], Any], zone: str, mode: BufferMode) -> None:
    booking = test_prospero.single(case[0], timezone=zone)
    back = generated_through_ical(booking, mode)
    assert back == booking
    if booking.status.is_live:
        assert prospero.to_json(back) == prospero.to_json(booking)


@SETTINGS
@given(test_zenspace.single_bookings(), MODES)
def test_zenspace_round_trip(booking: Booking, mode: BufferMode) -> None:
    [read] = zenspace.from_json(
        zenspace.to_json(booking, unlock_key="2468", pod_zone=booking.timezone),
        provider="pods",
        timezone=booking.timezone,
    )
    back = generated_through_ical(read, mode)
    assert back == read
    assert zenspace.to_json(back, unlock_key="2468", pod_zone=back.timezone) == zenspace.to_json(
        read, unlock_key="2468", pod_zone=read.timezone
    )


@SETTINGS
@given(test_google.bookings(), MODES)
def test_google_round_trip(booking: Booking, mode: BufferMode) -> None:
    [read] = google.from_json(test_google.everything(booking))
    back = generated_through_ical(read, mode)
    assert back == read
    assert google.to_json(back) == google.to_json(read)


@SETTINGS
@given(test_graph.bookings(with_rdates=False), MODES)
def test_graph_round_trip(booking: Booking, mode: BufferMode) -> None:
    if not graph.is_representable(booking):
        return
    [read] = graph.from_json(test_graph.everything(booking))
    back = generated_through_ical(read, mode)
    assert back == read
    assert graph.to_json(back) == graph.to_json(read)
