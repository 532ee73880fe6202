"""The three-way sync planner: provider now, calendar now, last synced state → actions.

Pure: it reads no clock, does no I/O and mutates nothing. The rules live here:

* the provider wins for objects the bridge wrote: a third-party edit is reverted, a third-party
  deletion is recreated;
* echo suppression: an object whose normalised content hash equals what we want needs nothing,
  whoever wrote it (our own writes coming back through the calendar's change feed are no-ops);
* an object found under a bridge UID without a link (a crash between the calendar write and
  the state record) is adopted, never duplicated;
* deletions above ``max_deletions`` are refused unless forced (a source that suddenly returns
  nothing must not empty the calendar).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why an action is planned; shown by ``--dry-run`` and kept in logs."""

    NEW = "new booking"
    CHANGED = "booking changed"
    REVERT = "third-party edit reverted"
    RECREATE = "third-party deletion recreated"
    ADOPT = "found on the calendar after an interrupted write"
    GONE = "booking cancelled, deleted or out of the window"
    STRAY = "bridge object with no booking"


@dataclass(frozen=True, slots=True)
class Desired:
    """An object the calendar should hold, rendered from a provider booking.

    ``ics`` is ``None`` when the object's hash came from the render memo
    (:mod:`bridge.sync.rendering`): planning needs only the hash, and the engine renders the
    text of the objects it writes.
    """

    uid: str
    booking_key: str
    ics: bytes | None
    content_hash: str


@dataclass(frozen=True, slots=True)
class Seen:
    """An object the calendar holds now (from the store snapshot plus the latest read)."""

    href: str
    uid: str
    etag: str | None
    content_hash: str
    bridge_owned: bool


@dataclass(frozen=True, slots=True)
class Link:
    """What the bridge last wrote for a UID."""

    uid: str
    booking_key: str
    href: str
    etag: str | None
    content_hash: str


@dataclass(frozen=True, slots=True)
class Create:
    """Create the object (idempotent: deterministic UID/href, If-None-Match)."""

    desired: Desired
    reason: Reason


@dataclass(frozen=True, slots=True)
class Update:
    """Replace the object at ``href`` if its etag is still ``etag``."""

    desired: Desired
    href: str
    etag: str | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the object at ``href`` if its etag is still ``etag``."""

    uid: str
    href: str
    etag: str | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class Record:
    """No write: only record (or refresh) the link, e.g. an adopted or echoed object."""

    desired: Desired
    href: str
    etag: str | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class Forget:
    """No write: drop the link of an object that is already gone."""

    uid: str


Action = Create | Update | Delete | Record | Forget


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions of one room's pass, and the deletions the safety valve held back."""

    actions: tuple[Action, ...] = ()
    withheld_deletions: int = 0
    notes: tuple[str, ...] = field(default=())

    def count(self, kind: type) -> int:
        """How many actions of one kind the plan holds."""
        return sum(isinstance(action, kind) for action in self.actions)


def plan_room_sync(
    desired: Iterable[Desired],
    seen: Iterable[Seen],
    links: Iterable[Link],
    *,
    max_deletions: int,
    force: bool = False,
) -> Plan:
    """Plan one room: make the calendar hold exactly ``desired`` among bridge objects."""
    wanted = {d.uid: d for d in desired}
    by_uid = _seen_by_uid(seen)
    linked = {link.uid: link for link in links}

    actions: list[Action] = []
    for uid, want in sorted(wanted.items()):
        actions.extend(_plan_wanted(want, by_uid.get(uid), linked.get(uid)))

    deletions: list[Action] = []
    for uid in sorted(linked):
        if uid in wanted:
            continue
        current = by_uid.get(uid)
        if current is None:
            actions.append(Forget(uid))
        else:
            deletions.append(Delete(uid, current.href, current.etag, Reason.GONE))
    for uid, current in sorted(by_uid.items()):
        if current.bridge_owned and uid not in wanted and uid not in linked:
            deletions.append(Delete(uid, current.href, current.etag, Reason.STRAY))

    if len(deletions) > max_deletions and not force:
        note = (
            f"refusing to delete {len(deletions)} events (max_deletions = {max_deletions}); "
            "run with --force if this is intended"
        )
        return Plan(tuple(actions), withheld_deletions=len(deletions), notes=(note,))
    return Plan(tuple(actions + deletions))


def _seen_by_uid(seen: Iterable[Seen]) -> dict[str, Seen]:
    """Index calendar objects by UID; the first href wins if a server holds a UID twice."""
    index: dict[str, Seen] = {}
    for item in sorted(seen, key=lambda s: s.href):
        index.setdefault(item.uid, item)
    return index


def _plan_wanted(want: Desired, current: Seen | None, link: Link | None) -> list[Action]:
    """Actions for one UID the provider wants on the calendar."""
    if current is None:
        reason = Reason.NEW if link is None else Reason.RECREATE
        return [Create(want, reason)]
    if current.content_hash == want.content_hash:
        unchanged_link = (
            link is not None
            and link.href == current.href
            and link.etag == current.etag
            and link.content_hash == want.content_hash
        )
        return [] if unchanged_link else [Record(want, current.href, current.etag, Reason.ADOPT)]
    if link is None:
        return [Update(want, current.href, current.etag, Reason.ADOPT)]
    edited_elsewhere = current.content_hash != link.content_hash
    reason = Reason.REVERT if edited_elsewhere else Reason.CHANGED
    return [Update(want, current.href, current.etag, reason)]


def summarize(plans: Mapping[str, Plan]) -> dict[str, dict[str, int]]:
    """Per-room counts of creates, updates and deletes, as ``--dry-run`` reports them."""
    return {
        room: {
            "created": plan.count(Create),
            "updated": plan.count(Update),
            "deleted": plan.count(Delete),
        }
        for room, plan in plans.items()
    }
