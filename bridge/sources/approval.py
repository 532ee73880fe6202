"""Providers that approve bookings later: how a writer reports where each booking stands.

A writer whose bookings wait for an admin (Prospero: pending → approved or denied) also
implements :class:`ApprovingWriter`; the intake's approval phase (``bridge.sync.approvals``)
turns the reports into the room's answer on the request event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

from bridge.model import Room


class Approval(StrEnum):
    """Where one provider booking made from a calendar request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    GONE = "gone"  # cancelled or deleted: the intake's own rule handles it


@runtime_checkable
class ApprovingWriter(Protocol):
    """A writer that can say, per booking key, whether the provider approved it."""

    def approvals(self, room: Room, keys: Sequence[str]) -> Mapping[str, Approval]:
        """The approval state of each of ``keys`` (a key the provider no longer has is GONE)."""
        ...
