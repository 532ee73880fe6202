"""How a pod's door code may reach its booker: the organizer's event description, opt-in.

Off by default. Only a room with ``device_code_to_organizer = true`` and
``feed_privacy = "full"`` shows codes, and only in the description of the booking's own
calendar event (a private booking never). Feeds render from the provider snapshot, which
never holds a code, so a busy feed cannot show one.

The sync engine calls :func:`description_with_codes` before rendering a booking's calendar
objects, with the codes from :meth:`StateStore.unlock_codes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bridge.model import Booking, Privacy

#: The line that introduces a door code in a description.
CODE_LINE = "Pod door code"


def description_with_codes(
    booking: Booking,
    codes: Sequence[tuple[datetime, str]],
    privacy: Privacy,
    *,
    share: bool,
) -> str:
    """The booking's description, followed by its door codes when sharing is allowed."""
    if not share or privacy is not Privacy.FULL or booking.private or not codes:
        return booking.description
    zone = ZoneInfo(booking.timezone)
    lines = [
        f"{CODE_LINE} ({start.astimezone(zone):%Y-%m-%d %H:%M}): {code}" for start, code in codes
    ]
    if len(codes) == 1:
        lines = [f"{CODE_LINE}: {codes[0][1]}"]
    return "\n\n".join(part for part in (booking.description, "\n".join(lines)) if part)
