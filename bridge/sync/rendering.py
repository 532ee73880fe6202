"""What each booking renders to, memoised so a quiet pass renders nothing.

Rendering a booking into iCalendar (``mappings.ical.booking_to_objects``) is a pure function
of the booking, the privacy it is shown with, the room's buffer mode and the mapping code.
The planner only needs each object's UID and content hash; the text is needed only for the
objects it decides to write. So the engine keeps, per room, a memo from a booking's
*fingerprint* (a digest of those inputs) to the UIDs and hashes it rendered to, and renders
again only bookings whose fingerprint is not in the memo — on a quiet pass, none.

Because the memo caches a pure function, it can never be wrong about what the bridge wrote or
what the calendar holds (links and snapshots still decide that); a crash at any point leaves
at worst a memo that is missing entries. What could make it stale is a change in the mapping
code: :data:`RENDERING` names the rendering generation (bump it when ``mappings.ical`` output
changes), the installed version is part of every fingerprint, and ``sync --full`` ignores the
memo altogether.

The memo is stored as one JSON document in the room's key-value rows (the cursors table), so
no schema change is needed; about 170 bytes per booking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

from bridge.errors import BridgeError
from bridge.model import Booking, BufferMode, Privacy, Window
from bridge.state.codec import dumps_booking
from bridge.sync.planner import Desired
from mappings.expansion import expand
from mappings.ical import booking_to_objects

#: The rendering generation; bump it whenever ``mappings.ical`` renders differently.
RENDERING = "1"
#: The key of the memo in the room's cursor rows.
RENDER_MEMO_CURSOR = "rendered"

#: One rendered object as remembered: (UID, content hash).
Rendered = tuple[str, str]


def _installed_version() -> str:
    """The installed roombridge version (part of every fingerprint)."""
    try:
        return metadata.version("roombridge")
    except metadata.PackageNotFoundError:
        return "unknown"


_SALT = f"{RENDERING}/{_installed_version()}"


def calendar_privacy(booking: Booking) -> Privacy:
    """What a room calendar may show of a booking: everything unless it is private."""
    return Privacy.BUSY if booking.private else Privacy.FULL


def fingerprint(booking: Booking, buffers: BufferMode) -> str:
    """A digest of everything a booking's calendar objects are rendered from."""
    privacy = calendar_privacy(booking)
    text = f"{_SALT}\n{privacy.value}\n{buffers.value}\n{dumps_booking(booking)}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class RenderMemo:
    """Booking key → (fingerprint, the objects that fingerprint rendered to)."""

    entries: Mapping[str, tuple[str, tuple[Rendered, ...]]]

    def dumps(self) -> str:
        """The memo as stored."""
        document = {
            key: [mark, [list(o) for o in objs]]
            for key, (mark, objs) in self.entries.items()
        }
        return json.dumps(
            document,
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | None) -> RenderMemo:
        """A stored memo; an absent or unreadable one is empty (everything renders again)."""
        if not text:
            return cls({})
        try:
            data = json.loads(text)
            entries = {
                str(key): (str(mark), tuple((str(uid), str(digest)) for uid, digest in objects))
                for key, (mark, objects) in data.items()
            }
        except (ValueError, TypeError, AttributeError):
            return cls({})
        return cls(entries)


class StaleRenderMemo(BridgeError):
    """The memo named an object its booking no longer renders (``sync --full`` rebuilds it)."""


@dataclass(frozen=True, slots=True)
class DesiredSet:
    """What the room's bookings call for, and the memo that describes it."""

    desired: list[Desired]
    memo: RenderMemo
    rendered: int


def desired_from_memo(
    bookings: Iterable[Booking], window: Window, buffers: BufferMode, memo: RenderMemo
) -> DesiredSet:
    """The desired objects, rendering only bookings the memo does not know as they are now.

    Objects taken from the memo carry no text (``ics is None``); :func:`with_text` renders
    the ones the plan writes.
    """
    wanted: list[Desired] = []
    entries: dict[str, tuple[str, tuple[Rendered, ...]]] = {}
    rendered = 0
    for booking in bookings:
        if not booking.status.is_live:
            continue
        if not any(o.status.is_live for o in expand(booking, window)):
            continue
        mark = fingerprint(booking, buffers)
        known = memo.entries.get(booking.key)
        if known is not None and known[0] == mark:
            entries[booking.key] = known
            wanted.extend(Desired(uid, booking.key, None, digest) for uid, digest in known[1])
            continue
        objects = booking_to_objects(booking, privacy=calendar_privacy(booking), buffers=buffers)
        rendered += 1
        entries[booking.key] = (mark, tuple((o.uid, o.content_hash) for o in objects))
        wanted.extend(Desired(o.uid, booking.key, o.ics, o.content_hash) for o in objects)
    return DesiredSet(wanted, RenderMemo(entries), rendered)


def with_text(want: Desired, booking: Booking, buffers: BufferMode) -> Desired:
    """``want`` with its iCalendar text, rendering its booking when the memo left it out."""
    if want.ics is not None:
        return want
    objects = booking_to_objects(booking, privacy=calendar_privacy(booking), buffers=buffers)
    for obj in objects:
        if obj.uid == want.uid:
            return Desired(obj.uid, want.booking_key, obj.ics, obj.content_hash)
    # Only a mapping change without a RENDERING bump gets here: fail this item, not the pass.
    raise StaleRenderMemo(f"booking {booking.key} no longer renders {want.uid}; run sync --full")
