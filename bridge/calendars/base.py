"""The small interface every calendar backend offers the sync executor.

A backend holds one room's calendar (a CalDAV collection, a Google calendar, a room mailbox).
It reads what changed since a cursor, and writes with optimistic concurrency: creates are
idempotent (an identity derived from the booking), updates and deletes carry the last seen
etag. Backends speak iCalendar text, so the planner can compare every backend the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from bridge.errors import BridgeError


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One calendar object as the server holds it now."""

    href: str
    etag: str | None
    uid: str
    ics: bytes


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What a read found: changed or new objects, deleted hrefs, and the next cursor.

    ``full`` is true when the read listed the whole calendar (no cursor, or the server
    rejected it): then any known href missing from ``changed`` is gone.
    """

    changed: list[RemoteObject] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    cursor: str | None = None
    full: bool = False
    requests: int = 0


class CalendarError(BridgeError):
    """A calendar operation failed; carries the server's status and reason."""

    def __init__(self, operation: str, target: str, status: int | None, reason: str):
        self.operation = operation
        self.target = target
        self.status = status
        self.reason = reason
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{operation} {target} failed{code}: {reason}")


class PreconditionFailed(CalendarError):
    """The object changed since we read it (HTTP 412): re-read and re-plan."""


class AlreadyExists(CalendarError):
    """A create found the deterministic identity taken: the object was created before."""

    def __init__(
        self,
        operation: str,
        target: str,
        status: int | None,
        reason: str,
        existing: RemoteObject | None = None,
    ):
        super().__init__(operation, target, status, reason)
        self.existing = existing


class NotFound(CalendarError):
    """The object or collection does not exist (HTTP 404/410)."""


class CursorExpired(CalendarError):
    """The server no longer accepts the sync cursor; a full read is needed."""


class CalendarBackend(Protocol):
    """One room's calendar, as the executor uses it."""

    def read_changes(self, cursor: str | None) -> ChangeSet:
        """Objects changed since ``cursor``; a full listing when it is None or rejected."""
        ...

    def create(self, uid: str, ics: bytes) -> RemoteObject:
        """Create the object for ``uid`` unless it exists (raises AlreadyExists then)."""
        ...

    def update(self, href: str, ics: bytes, etag: str | None) -> RemoteObject:
        """Replace the object if its etag still matches (raises PreconditionFailed)."""
        ...

    def delete(self, href: str, etag: str | None) -> None:
        """Delete the object if its etag still matches (raises PreconditionFailed)."""
        ...

    def get(self, href: str) -> RemoteObject:
        """Read one object (raises NotFound)."""
        ...


@runtime_checkable
class RequestAnswers(Protocol):
    """How a room answers booking requests made in its calendar (events it did not write).

    Each backend answers in its own idiom: CalDAV rewrites the event; Google patches the
    room's own attendee entry and private extended properties on its copy; Graph sets an
    extended property on the room mailbox's copy and accepts or declines as the room.
    """

    #: Whether the room may put an organizer's event back as it was (CalDAV only): where it
    #: cannot, a refused edit is declined instead.
    can_restore: bool

    def accept(
        self,
        href: str,
        etag: str | None,
        *,
        provider: str,
        keys: Sequence[str],
        declined: Sequence[datetime] = (),
        reason: str = "",
        tentative: bool = False,
    ) -> RemoteObject:
        """Accept as the room (``tentative``: not yet approved), tag, decline ``declined``."""
        ...

    def decline(
        self,
        href: str,
        etag: str | None,
        *,
        reason: str,
        occurrences: Sequence[datetime] = (),
    ) -> RemoteObject | None:
        """Decline as the room (wholly or some occurrences); None when the copy is gone."""
        ...

    def restore(self, href: str, etag: str | None, ics: bytes, *, reason: str) -> RemoteObject:
        """Put the event back as ``ics`` saying why (only where ``can_restore``)."""
        ...


@runtime_checkable
class AnsweringCalendar(CalendarBackend, RequestAnswers, Protocol):
    """A room calendar that also answers booking requests (what the intake needs)."""
