"""The booking system behind a world where people book the room from their calendar.

A request world reaches its provider only through :class:`RequestProvider`, so the same
calendar scenarios run against every provider that has a ``BookingWriter``: Nexudus
(:class:`NexudusRequests`) and OfficeRnD (:class:`OfficeRndRequestProvider`) here; another
provider plugs in by implementing the protocol (its ``[providers.<name>]`` table, its secrets,
the customer it bills, seeding a booking, and the room's live bookings with the request marker
each carries).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bridge.emulators.nexudus import NexudusEmulator
from bridge.emulators.officernd import Behaviour, OfficeRndEmulator
from tests.e2e.world import PASSWORD, USER, _utc


@dataclass(frozen=True, slots=True)
class Held:
    """One live provider booking (or series member) of the room, in UTC, and its marker."""

    start: datetime
    end: datetime
    marker: str | None


class RequestProvider(Protocol):
    """A provider as a calendar-request world drives it."""

    #: The provider's name in ``bridge.toml`` (the room's ``provider``).
    name: str
    #: The room's provider resource id.
    resource: str
    #: The room's ``default_customer`` (the provider customer billed), if it needs one.
    customer: str | None

    def serve(self) -> AbstractContextManager[object]:
        """Serve the provider's emulator for the duration of the block."""
        ...

    def toml(self) -> str:
        """The ``[providers.<name>]`` table (secrets as ``${VARIABLES}``)."""
        ...

    def environment(self) -> dict[str, str]:
        """The variables the table names."""
        ...

    def book(self, start: datetime, end: datetime, *, booker: str) -> None:
        """Someone books the room directly in the provider."""
        ...

    def held(self) -> list[Held]:
        """The room's live bookings, in start order."""
        ...


def request_room_keys(buffer_before: str, buffer_after: str, customer: str | None = None) -> str:
    """The room keys that make a room take requests from its calendar (buffers, customer)."""
    text = (
        'direction = "both"\n'
        f'buffer_before = "{buffer_before}"\n'
        f'buffer_after = "{buffer_after}"\n'
    )
    if customer is not None:
        text += f'default_customer = "{customer}"\n'
    return text


def nexudus_held(emulator: NexudusEmulator, resource: str) -> list[Held]:
    """Live Nexudus records of a resource, in start order, with their request markers."""
    records = (r for r in emulator.bookings() if str(r["ResourceId"]) == str(resource))
    return sorted(
        (Held(_utc(r["FromTime"]), _utc(r["ToTime"]), r.get("SystemId")) for r in records),
        key=lambda held: (held.start, held.marker or ""),
    )


class NexudusRequests:
    """Nexudus (admin API) behind the room."""

    name = "hq"
    customer = None  # the organizer's coworker account is billed

    def __init__(self, now: datetime) -> None:
        self.emulator = NexudusEmulator(now=now, seed=7)
        self.emulator.add_user(USER, PASSWORD)
        business = self.emulator.add_business("Acme London", time_zone="GMT Standard Time")
        self.resource = str(self.emulator.add_resource("Callisto", business_id=business))
        # Ada, who organizes every invitation, is a Nexudus customer: her requests can be billed.
        self.emulator.add_coworker("Ada Lovelace", "ada@example.com")
        self.base_url = ""

    @contextmanager
    def serve(self) -> Iterator[object]:
        """Serve the Nexudus emulator."""
        with self.emulator.serve() as served:
            self.base_url = served.base_url
            yield served

    def toml(self) -> str:
        """The provider table."""
        return (
            f"[providers.{self.name}]\n"
            'kind = "nexudus"\n'
            f'base_url = "{self.base_url}"\n'
            f'username = "{USER}"\n'
            'password = "${E2E_NEXUDUS_PASSWORD}"\n'
        )

    def environment(self) -> dict[str, str]:
        """The password variable."""
        return {"E2E_NEXUDUS_PASSWORD": PASSWORD}

    def book(self, start: datetime, end: datetime, *, booker: str) -> None:
        """A booking made in the Nexudus UI."""
        self.emulator.seed_booking(int(self.resource), start, end, CoworkerFullName=booker)

    def held(self) -> list[Held]:
        """Live Nexudus records of the room."""
        return nexudus_held(self.emulator, self.resource)


class OfficeRndRequestProvider:
    """OfficeRnD behind the room; bookings made from the calendar bill one company."""

    name = "flex"
    customer = "company-calendar"
    org = "acme"
    client_id = "roombridge-e2e"
    secret = "e2e-0rnd-Cl13nt-Secret"

    def __init__(self, now: datetime) -> None:
        # Every in-process pass takes its own token: the 5/minute token limit stays off here.
        self.now = now
        self.emulator = OfficeRndEmulator(
            org=self.org, now=now, seed=7, behaviour=Behaviour(token_requests_per_minute=None)
        )
        self.emulator.add_application(self.client_id, self.secret)
        location = self.emulator.add_location("Acme London", timezone="Europe/London")
        self.resource = self.emulator.add_resource("Callisto", location=location)
        self.base_url = ""

    @contextmanager
    def serve(self) -> Iterator[object]:
        """Serve the OfficeRnD emulator."""
        with self.emulator.serve() as served:
            self.base_url = served.base_url
            yield served

    def toml(self) -> str:
        """The provider table."""
        return (
            f"[providers.{self.name}]\n"
            'kind = "officernd"\n'
            f'base_url = "{self.base_url}"\n'
            f'token_url = "{self.base_url}/oauth/token"\n'
            f'org = "{self.org}"\n'
            f'client_id = "{self.client_id}"\n'
            'client_secret = "${E2E_ORND_SECRET}"\n'
        )

    def environment(self) -> dict[str, str]:
        """The client secret variable."""
        return {"E2E_ORND_SECRET": self.secret}

    def book(self, start: datetime, end: datetime, *, booker: str) -> None:
        """A booking made in the OfficeRnD admin UI (the booker is its title)."""
        self.emulator.seed_booking(self.resource, start, end, title=booker)

    def held(self) -> list[Held]:
        """The room's live occurrences over the sync window, with their bookings' markers."""
        markers = {str(b["_id"]): b.get("source") for b in self.emulator.bookings()}
        occurrences = self.emulator.live_occurrences(
            self.resource, self.now - timedelta(days=30), self.now + timedelta(days=365)
        )
        return sorted(
            (
                Held(o.start, o.end, markers.get(o.booking))
                for o in occurrences
                if not o.cancelled
            ),
            key=lambda held: (held.start, held.marker or ""),
        )
