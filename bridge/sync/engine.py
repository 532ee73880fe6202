"""One room's sync pass: read both sides, plan (pure), execute, record.

The order is what makes a SIGKILL at any point harmless:

1. the provider read is merged into the stored provider snapshot together with its cursor, in
   one transaction (the snapshot, not the cursor, is what later passes plan from);
2. the calendar read is merged into the stored calendar snapshot with its sync token;
3. the planner compares the snapshots with the links (what the bridge last wrote);
4. each action is applied and recorded in its own transaction right after it succeeds. A crash
   between a calendar write and its record leaves an object under a deterministic UID that
   the next pass finds and adopts instead of duplicating;
5. when anything was written, one more calendar read settles the sync token past our own
   writes, so the next pass starts from a quiet calendar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from bridge.calendars.base import (
    AlreadyExists,
    AnsweringCalendar,
    CalendarBackend,
    ChangeSet,
    NotFound,
    PreconditionFailed,
    RemoteObject,
)
from bridge.devices.disclosure import description_with_codes
from bridge.errors import BridgeError
from bridge.model import Booking, BufferMode, Room, Window
from bridge.sources.base import BookingSource
from bridge.sources.writers import BookingWriter
from bridge.state.store import CalendarObject as StoredObject
from bridge.state.store import Link as StoredLink
from bridge.state.store import LinkOrigin, ObjectOrigin, StateStore
from bridge.sync.approvals import run_intake
from bridge.sync.intake import IntakeOutcome, RequestIntake, calendar_linked_keys
from bridge.sync.planner import (
    Action,
    Create,
    Delete,
    Desired,
    Forget,
    Link,
    Plan,
    Record,
    Seen,
    Update,
    plan_room_sync,
)
from bridge.sync.rendering import (
    RENDER_MEMO_CURSOR,
    DesiredSet,
    RenderMemo,
    desired_from_memo,
    with_text,
)
from mappings.ical import UID_PREFIX, content_hash

PROVIDER_CURSOR = "provider"
CALENDAR_CURSOR = "calendar"

#: How often a write is retried after a 412 before the item is left for the next pass.
MAX_PRECONDITION_RETRIES = 2


#: Called as ``progress(room_id, done, total)`` after each applied action of a pass.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class PassOptions:
    """How one sync pass runs."""

    window: Window
    max_deletions: int
    full: bool = False
    dry_run: bool = False
    force: bool = False
    progress: Progress | None = None


@dataclass(slots=True)
class RoomResult:
    """What one room's pass did (the ``sync --json`` room entry)."""

    id: str
    ok: bool = True
    created: int = 0
    updated: int = 0
    deleted: int = 0
    declined: int = 0
    errors: list[str] = field(default_factory=list)
    planned: list[dict[str, str]] = field(default_factory=list)
    provider_requests: int = 0
    calendar_requests: int = 0

    def as_json(self) -> dict[str, object]:
        """The JSON shape of the contract (more keys allowed)."""
        return {
            "id": self.id,
            "ok": self.ok,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "declined": self.declined,
            "errors": list(self.errors),
            "planned": list(self.planned),
            "requests": {"calendar": self.calendar_requests},
        }


def is_bridge_uid(uid: str) -> bool:
    """Whether a calendar UID is one the bridge derives from a booking."""
    return uid.startswith(UID_PREFIX + "-")


def desired_objects(
    bookings: Iterable[Booking], window: Window, buffers: BufferMode
) -> list[Desired]:
    """The calendar objects the room's live bookings in the window call for, all rendered."""
    return desired_from_memo(bookings, window, buffers, RenderMemo({})).desired


@dataclass(frozen=True, slots=True)
class RoomPlan:
    """A plan with what it was made from: the bookings by key and the render memo."""

    plan: Plan
    bookings: Mapping[str, Booking]
    rendered: DesiredSet


class RoomSync:
    """Runs passes for one room over its provider source, calendar and the state store."""

    def __init__(
        self,
        room: Room,
        source: BookingSource,
        calendar: CalendarBackend | None,
        store: StateStore,
        *,
        clock: Callable[[], datetime],
        writer: BookingWriter | None = None,
    ) -> None:
        self.room = room
        self.source = source
        self.calendar = calendar
        self.store = store
        self.clock = clock
        self.writer = writer

    @property
    def takes_requests(self) -> bool:
        """Whether events made in the room calendar become provider bookings."""
        return (
            self.writer is not None
            and self.room.direction in ("both", "from-calendar")
            and isinstance(self.calendar, AnsweringCalendar)
        )

    # ----- the pass ------------------------------------------------------------------------

    def run(self, options: PassOptions) -> RoomResult:
        """One pass; failures of single items are recorded, a failed read fails the room."""
        result = RoomResult(self.room.id)
        requests_before = self._calendar_request_count()
        run_id = None if options.dry_run else self.store.begin_run(self.room.id, self.clock())
        try:
            bookings = self._read_provider(options, result)
            if self.calendar is None:
                return self._finish(run_id, result, requests_before)
            seen = self._read_calendar(options, result, settle=False)
            intake_wrote = False
            if self.takes_requests and not options.dry_run:
                intake = self._intake(options, result)
                intake_wrote = intake.wrote
                bookings = [b for b in bookings if b.key not in intake.released]
            if self.room.direction == "from-calendar":
                if intake_wrote:
                    self._read_calendar(options, result, settle=True)
                return self._finish(run_id, result, requests_before)
            room_plan = self._plan(bookings, seen, options)
            plan = room_plan.plan
            result.errors.extend(plan.notes)
            if plan.notes:
                result.ok = False
            if options.dry_run:
                result.planned = [_describe(action) for action in plan.actions]
            else:
                self._remember_rendering(room_plan.rendered.memo)
                wrote = self._execute(plan.actions, room_plan.bookings, result, options.progress)
                if wrote or intake_wrote:
                    self._read_calendar(options, result, settle=True)
        except BridgeError as exc:
            result.ok = False
            result.errors.append(str(exc))
        return self._finish(run_id, result, requests_before)

    def _intake(self, options: PassOptions, result: RoomResult) -> IntakeOutcome:
        """Turn the calendar's booking requests into provider bookings or declines."""
        assert isinstance(self.calendar, AnsweringCalendar) and self.writer is not None
        intake = RequestIntake(self.room, self.calendar, self.writer, self.store, clock=self.clock)
        outcome: IntakeOutcome = run_intake(intake, self.writer, options.window)
        result.created += outcome.created
        result.updated += outcome.updated
        result.deleted += outcome.deleted
        result.declined += outcome.declined
        if outcome.errors:
            result.ok = False
            result.errors.extend(outcome.errors)
        return outcome

    def _calendar_request_count(self) -> int | None:
        """The calendar backend's running HTTP request count, when it keeps one."""
        count = getattr(self.calendar, "request_count", None)
        return count if isinstance(count, int) else None

    def _finish(
        self, run_id: int | None, result: RoomResult, requests_before: int | None = None
    ) -> RoomResult:
        """Record the end of the pass (not for dry runs)."""
        requests_after = self._calendar_request_count()
        if requests_before is not None and requests_after is not None:
            result.calendar_requests = requests_after - requests_before
        if run_id is not None:
            self.store.finish_run(
                run_id,
                self.clock(),
                ok=result.ok,
                created=result.created,
                updated=result.updated,
                deleted=result.deleted,
                declined=result.declined,
                errors=result.errors,
            )
        return result

    # ----- reading -------------------------------------------------------------------------

    def _read_provider(self, options: PassOptions, result: RoomResult) -> list[Booking]:
        """Merge the provider's changes into the snapshot; returns the room's bookings."""
        room_id = self.room.id
        cursor = None if options.full else self.store.get_cursor(room_id, PROVIDER_CURSOR)
        read = self.source.read(
            self.room, cursor, options.window, full=options.full, now=self.clock()
        )
        result.provider_requests += read.requests
        known = {pb.booking_key: pb.booking for pb in self.store.provider_bookings(room_id)}
        current = {} if read.full else dict(known)
        for key in read.removed:
            current.pop(key, None)
        for booking in read.bookings:
            current[booking.key] = booking
        if not options.dry_run:
            now = self.clock()
            with self.store.transaction():
                for key in known.keys() - current.keys():
                    self.store.delete_provider_booking(room_id, key)
                for key, booking in current.items():
                    if known.get(key) != booking:
                        self.store.put_provider_booking(room_id, booking, now)
                self.store.set_cursor(room_id, PROVIDER_CURSOR, read.cursor, now)
        return list(current.values())

    def _read_calendar(
        self, options: PassOptions, result: RoomResult, *, settle: bool
    ) -> list[Seen]:
        """Merge the calendar's changes into the snapshot; returns what the calendar holds."""
        assert self.calendar is not None
        room_id = self.room.id
        cursor = (
            None if options.full and not settle else self.store.get_cursor(room_id, CALENDAR_CURSOR)
        )
        changes = self.calendar.read_changes(cursor)
        result.calendar_requests += changes.requests
        known = {obj.href: obj for obj in self.store.calendar_objects(room_id)}
        current = self._merged(known, changes)
        if not options.dry_run:
            now = self.clock()
            with self.store.transaction():
                for href in known.keys() - current.keys():
                    self.store.delete_calendar_object(room_id, href)
                for href, obj in current.items():
                    if known.get(href) != obj:
                        self.store.put_calendar_object(obj)
                self.store.set_cursor(room_id, CALENDAR_CURSOR, changes.cursor, now)
        return [
            Seen(o.href, o.uid, o.etag, o.content_hash or "", o.origin is ObjectOrigin.BRIDGE)
            for o in current.values()
        ]

    def _merged(
        self, known: dict[str, StoredObject], changes: ChangeSet
    ) -> dict[str, StoredObject]:
        """The calendar snapshot after applying a change set."""
        current = {} if changes.full else dict(known)
        for href in changes.deleted:
            current.pop(href, None)
        for remote in changes.changed:
            previous = known.get(remote.href)
            if previous is not None and previous.etag == remote.etag and previous.content_hash:
                current[remote.href] = previous
            else:
                current[remote.href] = self._stored(remote)
        return current

    def _stored(self, remote: RemoteObject, booking_key: str | None = None) -> StoredObject:
        """The snapshot entry of a calendar object (foreign objects keep their text)."""
        ours = is_bridge_uid(remote.uid)
        return StoredObject(
            room_id=self.room.id,
            href=remote.href,
            uid=remote.uid,
            etag=remote.etag,
            content_hash=content_hash(remote.ics) if remote.ics else None,
            origin=ObjectOrigin.BRIDGE if ours else ObjectOrigin.FOREIGN,
            booking_key=booking_key,
            ics=None if ours else remote.ics,
        )

    # ----- planning ------------------------------------------------------------------------

    def _plan(self, bookings: list[Booking], seen: list[Seen], options: PassOptions) -> RoomPlan:
        """The room's plan from the snapshots and the links."""
        links = [
            Link(link.uid, link.booking_key, link.href, link.etag, link.content_hash or "")
            for link in self.store.room_links(self.room.id)
            if link.origin is LinkOrigin.PROVIDER
        ]
        # A booking made from a calendar event already has its calendar object: that event.
        requested = calendar_linked_keys(self.store, self.room.id)
        bookings = [booking for booking in bookings if booking.key not in requested]
        if self.room.device_code_to_organizer:
            bookings = [self._with_door_codes(booking) for booking in bookings]
        # `--full` re-renders everything: the memo is never trusted across a forced read.
        memo = RenderMemo({})
        if not options.full:
            memo = RenderMemo.loads(self.store.get_cursor(self.room.id, RENDER_MEMO_CURSOR))
        rendered = desired_from_memo(bookings, options.window, self.room.buffers, memo)
        plan = plan_room_sync(
            rendered.desired, seen, links, max_deletions=options.max_deletions, force=options.force
        )
        return RoomPlan(plan, {booking.key: booking for booking in bookings}, rendered)

    def _remember_rendering(self, memo: RenderMemo) -> None:
        """Store the render memo when it changed (a cache: losing it only costs renders)."""
        text = memo.dumps()
        if text != self.store.get_cursor(self.room.id, RENDER_MEMO_CURSOR):
            self.store.set_cursor(self.room.id, RENDER_MEMO_CURSOR, text, self.clock())

    def _with_door_codes(self, booking: Booking) -> Booking:
        """The booking with its pods' door codes in the description (opt-in, full privacy)."""
        codes = self.store.unlock_codes(self.room.id, booking.key)
        description = description_with_codes(
            booking, codes, self.room.feed_privacy, share=self.room.device_code_to_organizer
        )
        if description == booking.description:
            return booking
        return booking.evolve(description=description)

    # ----- executing -----------------------------------------------------------------------

    def _execute(
        self,
        actions: Sequence[Action],
        bookings: Mapping[str, Booking],
        result: RoomResult,
        progress: Progress | None = None,
    ) -> bool:
        """Apply each action, isolating failures; whether anything was written."""
        links = {link.uid: link for link in self.store.room_links(self.room.id)}
        # Only items that failed before have an error to clear: one commit fewer per write.
        failed_before = {error.item for error in self.store.errors(self.room.id)}
        wrote = False
        for done, action in enumerate(actions):
            if progress is not None:
                progress(self.room.id, done, len(actions))
            item = _item_of(action)
            try:
                wrote |= self._apply(self._with_text(action, bookings), links, result)
            except BridgeError as exc:
                result.ok = False
                result.errors.append(f"{item}: {exc}")
                self.store.record_error(
                    self.room.id, item, type(action).__name__.lower(), str(exc), self.clock()
                )
            else:
                if item in failed_before:
                    self.store.clear_error(self.room.id, item)
        if progress is not None and actions:
            progress(self.room.id, len(actions), len(actions))
        return wrote

    def _with_text(self, action: Action, bookings: Mapping[str, Booking]) -> Action:
        """A create or update with its object's text (the memo gives hashes only)."""
        if isinstance(action, Create | Update) and action.desired.ics is None:
            booking = bookings[action.desired.booking_key]
            return replace(action, desired=with_text(action.desired, booking, self.room.buffers))
        return action

    def _apply(self, action: Action, links: dict[str, StoredLink], result: RoomResult) -> bool:
        """Apply one action and record it; whether the calendar was written."""
        if isinstance(action, Create):
            self._create(action.desired, result)
            return True
        if isinstance(action, Update):
            self._update(action.desired, action.href, action.etag, result)
            return True
        if isinstance(action, Delete):
            self._delete(action.uid, action.href, action.etag, links, result)
            return True
        if isinstance(action, Record):
            self._record(action.desired, action.href, action.etag)
            return False
        if isinstance(action, Forget):
            self._forget(action.uid, links)
        return False

    def _create(self, want: Desired, result: RoomResult) -> None:
        """Create, or adopt what an interrupted earlier pass created."""
        assert self.calendar is not None
        try:
            remote = self.calendar.create(want.uid, _text_of(want))
        except AlreadyExists as exc:
            existing = exc.existing or self._find(want.uid)
            if existing is None:
                raise
            if existing.ics and content_hash(existing.ics) == want.content_hash:
                self._record(want, existing.href, existing.etag)
                return
            self._update(want, existing.href, existing.etag, result)
            return
        self._record(want, remote.href, remote.etag)
        result.created += 1

    def _update(self, want: Desired, href: str, etag: str | None, result: RoomResult) -> None:
        """Replace an object, re-reading it after a 412 (the provider wins)."""
        assert self.calendar is not None
        for _attempt in range(MAX_PRECONDITION_RETRIES + 1):
            try:
                remote = self.calendar.update(href, _text_of(want), etag)
            except PreconditionFailed:
                try:
                    etag = self.calendar.get(href).etag
                except NotFound:
                    self._create(want, result)
                    return
                continue
            except NotFound:
                self._create(want, result)
                return
            self._record(want, remote.href, remote.etag)
            result.updated += 1
            return
        raise PreconditionFailed("update", href, 412, "the object keeps changing; next pass")

    def _delete(
        self,
        uid: str,
        href: str,
        etag: str | None,
        links: dict[str, StoredLink],
        result: RoomResult,
    ) -> None:
        """Delete an object (re-reading after a 412), then drop its link and snapshot."""
        assert self.calendar is not None
        for _attempt in range(MAX_PRECONDITION_RETRIES + 1):
            try:
                self.calendar.delete(href, etag)
            except PreconditionFailed:
                try:
                    etag = self.calendar.get(href).etag
                except NotFound:
                    break
                continue
            except NotFound:
                break
            break
        else:
            raise PreconditionFailed("delete", href, 412, "the object keeps changing; next pass")
        with self.store.transaction():
            self.store.delete_calendar_object(self.room.id, href)
            self._forget(uid, links)
        result.deleted += 1

    def _record(self, want: Desired, href: str, etag: str | None) -> None:
        """Record a written (or adopted) object as linked and as last seen, atomically."""
        now = self.clock()
        with self.store.transaction():
            self.store.record_write(
                self.room.id,
                want.booking_key,
                uid=want.uid,
                href=href,
                etag=etag,
                content_hash=want.content_hash,
                origin=LinkOrigin.PROVIDER,
                now=now,
            )
            self.store.put_calendar_object(
                StoredObject(
                    room_id=self.room.id,
                    href=href,
                    uid=want.uid,
                    etag=etag,
                    content_hash=want.content_hash,
                    origin=ObjectOrigin.BRIDGE,
                    booking_key=want.booking_key,
                )
            )

    def _forget(self, uid: str, links: dict[str, StoredLink]) -> None:
        """Drop the link of a UID."""
        link = links.get(uid)
        if link is not None:
            self.store.forget(self.room.id, link.booking_key, uid)

    def _find(self, uid: str) -> RemoteObject | None:
        """Look an object up by UID when a create collided without telling us where."""
        finder = getattr(self.calendar, "find_by_uid", None)
        if finder is None:
            return None
        found = finder(uid)
        return found if isinstance(found, RemoteObject) else None


def _text_of(want: Desired) -> bytes:
    """The text of an object about to be written (rendered by :meth:`RoomSync._with_text`)."""
    if want.ics is None:
        raise AssertionError(f"{want.uid}: written without its rendered text")
    return want.ics


def _item_of(action: Action) -> str:
    """The UID an action is about, for error records."""
    if isinstance(action, Create | Update | Record):
        return action.desired.uid
    return action.uid


def _describe(action: Action) -> dict[str, str]:
    """A dry-run line for one action."""
    kind = type(action).__name__.lower()
    reason = getattr(action, "reason", "")
    return {"action": kind, "uid": _item_of(action), "reason": str(reason)}
