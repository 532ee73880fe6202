"""Busy feeds built from every provider's recorded payloads show nothing personal.

Each fixture of ``tests/fixtures/{nexudus,officernd,prospero}`` goes the way real data goes:
the provider's mapping, the state store, the feed publisher. Every title, name, email,
phone, note and description in the source JSON (found by its key, so a new fixture field is
covered without editing this test) must be absent from the busy feed's bytes — whole and
word by word — while the feed still shows exactly the bookings' occurrences. The same data
in a ``full`` feed does show, so the check can fail.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.feeds.publisher import FeedPublisher
from bridge.feeds.render import feed_window
from bridge.model import Booking
from bridge.state.store import StateStore
from mappings import nexudus, officernd, prospero
from mappings.expansion import live_instants
from tests.feeds.parsers import READERS
from tests.feeds.test_publisher import ROOM, write_config

FIXTURES = Path(__file__).parents[1] / "fixtures"
MAPPINGS: dict[str, Callable[..., list[Booking]]] = {
    "nexudus": nexudus.from_json,
    "officernd": officernd.from_json,
    "prospero": prospero.from_json,
}
# Keys whose values are about people or what they wrote (case-insensitive, anywhere in the key).
PERSONAL_KEY = re.compile(
    r"name|mail|phone|mobile|note|title|summary|description|subject|company|contact|"
    r"comment|message|purpose|updatedby|createdby|tostringtext|visitor|tariff|team",
    re.IGNORECASE,
)
NOT_PERSONAL_KEY = re.compile(r"zone|id$|ids$", re.IGNORECASE)
# When someone edited the booking is the booking's too (a busy feed shows only its times).
EDIT_TIME_KEY = re.compile(r"updated|modified|created", re.IGNORECASE)
# Fixtures whose bookings are cancelled are made live, so that they reach the feed at all.
MAKE_LIVE: dict[str, dict[str, Any]] = {
    "v1-booking-object.json": {"canceled": False},
    "single-booking.json": {"bookingStatus": 1},
}
CASES = [
    ("nexudus", "admin-series-weekly-london.json"),
    ("nexudus", "admin-single-record.json"),
    ("nexudus", "portal-fullcalendar-bookings.json"),
    ("nexudus", "portal-get-one.json"),
    ("officernd", "daily-until-2300z-sydney.json"),
    ("officernd", "v1-booking-object.json"),
    ("officernd", "v2-weekly-with-occurrences.json"),
    ("prospero", "list-response.json"),
    ("prospero", "multi-event-booking.json"),
    ("prospero", "single-booking.json"),
]


def test_every_provider_fixture_is_covered() -> None:
    """A new provider fixture must be added to CASES (or fail to map) to pass."""
    listed = {(provider, name) for provider, name in CASES}
    for provider in MAPPINGS:
        for path in (FIXTURES / provider).glob("*.json"):
            if (provider, path.name) in listed:
                continue
            with pytest.raises(Exception):  # noqa: B017 - fixtures of invalid input only
                MAPPINGS[provider](json.loads(path.read_text()), timezone="Europe/London")


def personal_values(data: object, key: str = "") -> Iterator[str]:
    """Every string under a personal key, anywhere in the JSON but the resource's own record."""
    if isinstance(data, dict):
        for name, value in data.items():
            if name != "Resource":  # the room's description (portal get-one), nobody's data
                yield from personal_values(value, name if isinstance(name, str) else key)
    elif isinstance(data, list):
        for item in data:
            yield from personal_values(item, key)
    elif isinstance(data, str) and PERSONAL_KEY.search(key) and not NOT_PERSONAL_KEY.search(key):
        yield data
    elif isinstance(data, str) and EDIT_TIME_KEY.search(key) and re.match(r"\d{4}-\d\d-", data):
        # As a date-time property would show it: 2025-01-02T03:04:05Z → 20250102T030405
        yield re.sub(r"[-:]", "", data)[:15]


def fragments(value: str) -> set[str]:
    """The value, its text without markup, and each of its words of four letters or more."""
    text = re.sub(r"<[^>]+>", " ", value)
    found = {value.strip(), *(part.strip() for part in re.split(r"[\r\n]+", text))}
    found |= set(re.findall(r"[^\W\d_][\w@.'+-]{3,}", text))
    return {item for item in found if len(item) >= 4}


def feed_of(folder: Path, bookings: list[Booking], now: datetime, privacy: str) -> bytes:
    """The room's feed as the server would send it, from bookings put into the store."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, f"sqlite:///{folder / 'state.db'}", privacy=privacy,
                          buffers="separate")
    with StateStore.open(config.state.url) as store:
        for booking in bookings:
            store.put_provider_booking(ROOM, booking, now)
        return FeedPublisher(config, store, clock=lambda: now).document(ROOM).body


@pytest.mark.parametrize(("provider", "name"), CASES, ids=[f"{p}/{n}" for p, n in CASES])
def test_a_busy_feed_of_the_fixture_shows_times_and_nothing_personal(
    tmp_path: Path, provider: str, name: str
) -> None:
    data = json.loads((FIXTURES / provider / name).read_text())
    if name in MAKE_LIVE:
        data = {**data, **MAKE_LIVE[name]}
    bookings = MAPPINGS[provider](data, provider="hq", timezone="Europe/London")
    now = min(b.start for b in bookings).astimezone(UTC) - timedelta(days=1)
    secrets = {fragment for value in personal_values(data) for fragment in fragments(value)}
    assert secrets, "the fixture has personal data to look for"

    body = feed_of(tmp_path / "busy", bookings, now, "busy")
    window = feed_window(now, 30, 365)
    wanted = Counter(pair for b in bookings for pair in live_instants(b, window))
    assert wanted, "the fixture has live occurrences in the window"
    for reader, read in READERS.items():
        # Every occurrence shows (the separate setup/cleanup events come on top).
        assert wanted - read(body, window.start, window.end) == Counter(), reader
    text = body.decode()
    events = "".join(re.findall(r"BEGIN:VEVENT.*?END:VEVENT", text, re.DOTALL))
    leaked = sorted(s for s in secrets if s in (events if " " not in s else text))
    assert leaked == [], f"{provider}/{name} busy feed shows {leaked}"

    # Not vacuous: a full feed of the same bookings does show some of them.
    full = feed_of(tmp_path / "full", [b.evolve(private=False) for b in bookings], now, "full")
    assert any(secret in full.decode() for secret in secrets)
