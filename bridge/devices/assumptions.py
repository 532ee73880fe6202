"""Every assumption the bridge makes about the thinly documented ZenSpace API, in one place.

The public documentation (shared/reference/zenspace.md) leaves gaps G1–G12. Wherever the
client, the arming plan or the emulator has to pick a reading, the pick lives here as a field of
:class:`ZenSpaceAssumptions`, named after the gap it fills, so that confirming (or refuting) one
with ZenSpace is a one-line change — or, in a deployment, an entry of the provider's
``[providers.NAME.assumptions]`` table (see :func:`assumptions_from_table`).

Nothing else in the code base may hard-code a ZenSpace path, header, device vocabulary or
device-action body: it reads them from an instance of this class. The emulator reads the same
instance, so it is strict where the documentation is clear and follows these readings where it
is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta

#: Units accepted by :func:`assumptions_from_table` for durations (``"90s"``, ``"24h"``).
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class ZenSpaceAssumptions:
    """Readings of the ZenSpace documentation's gaps; each default names its source or gap."""

    # G2: only device pages show a key header; we send it on every call, the emulator
    # refuses a call without it (401 — no 401 is documented anywhere on surface A).
    api_key_header: str = "X-API-Key"
    require_api_key: bool = True

    # SEED: one call creates, updates (same id) and cancels (is_active: false).
    booking_path: str = "/booking_operation"
    # §3.1: whether a cancel needs the whole body is unstated; the full last body is safe.
    cancel_with_full_body: bool = True

    # AD-STATUS-LOCK: documented path and envelope {"response": {device, value, status}}.
    device_status_path: str = "/devices/{meeting_space_id}/status"
    # G7: the "Action on IoT Device" page is not retrievable. By analogy with the status call:
    # POST /devices/{id}/action with {"device_type": ..., "action": "on" | "off"}.
    device_action_path: str = "/devices/{meeting_space_id}/action"
    device_action_field: str = "action"
    action_on: str = "on"
    action_off: str = "off"
    # The issue names light and fan; the lock is opened by the unlock key, never switched.
    switched_devices: tuple[str, ...] = ("light", "fan")

    # AD-EVENTS-A vs AD-EVENTS-B (G9): the event list key differs between two pages; the
    # client accepts both, the emulator answers with this one.
    events_path: str = "/devices/events"
    events_key: str = "events"

    # DZ-STATE (surface B): the only documented call returning the pod's "timezone".
    space_state_path: str = "/meetingspace/get_meeting_space_by_id"

    # G6: format and length of unlock_key are undocumented; the example is "1111". Six digits
    # make guessing a door code a one-in-a-million try.
    unlock_key_digits: int = 6

    # The emulator's reading of G3 (no field table): a body field outside the published
    # example is refused with 400, so a client typo cannot pass unnoticed.
    refuse_unknown_fields: bool = True
    # G10: every example carries an offset; a time without one is refused with 400.
    require_offsets: bool = True

    # The issue: arm occurrences starting within this horizon.
    arming_horizon: timedelta = timedelta(hours=24)

    # Backoff of a failed device call: base · 2^(attempt-1), capped.
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=10)

    def status_path(self, meeting_space_id: str) -> str:
        """The device-status path of one pod."""
        return self.device_status_path.format(meeting_space_id=meeting_space_id)

    def action_path(self, meeting_space_id: str) -> str:
        """The device-action path of one pod."""
        return self.device_action_path.format(meeting_space_id=meeting_space_id)

    def action_body(self, device_type: str, switch_on: bool) -> dict[str, str]:
        """The body of one device action (G7 reading)."""
        value = self.action_on if switch_on else self.action_off
        return {"device_type": device_type, self.device_action_field: value}

    def retry_delay(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        delay: timedelta = self.retry_base * (2 ** max(0, attempt - 1))
        return min(self.retry_max, delay)


DEFAULT_ASSUMPTIONS = ZenSpaceAssumptions()


class AssumptionError(ValueError):
    """A bad ``assumptions`` entry; ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def assumptions_from_table(table: Mapping[str, object]) -> ZenSpaceAssumptions:
    """Defaults overridden by a configuration table; unknown keys and wrong types are errors."""
    known = {item.name: item for item in fields(ZenSpaceAssumptions)}
    changes: dict[str, object] = {}
    for key, value in table.items():
        if key not in known:
            names = ", ".join(sorted(known))
            raise AssumptionError(key, f"unknown key (known keys here: {names})")
        changes[key] = _converted(key, value, getattr(DEFAULT_ASSUMPTIONS, key))
    assumptions = replace(DEFAULT_ASSUMPTIONS, **changes)  # type: ignore[arg-type]
    if not 4 <= assumptions.unlock_key_digits <= 12:
        raise AssumptionError("unlock_key_digits", "must be between 4 and 12")
    if assumptions.arming_horizon <= timedelta(0):
        raise AssumptionError("arming_horizon", "must be longer than 0s")
    return assumptions


def _converted(key: str, value: object, default: object) -> object:
    """``value`` checked against the type of the field's default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, timedelta):
        if isinstance(value, str):
            return _duration(key, value)
    elif isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
    elif isinstance(value, str) and value:
        return value
    expected = type(default).__name__.replace("timedelta", "duration string")
    raise AssumptionError(key, f"expected {expected.replace('tuple', 'list of strings')}")


def _duration(key: str, text: str) -> timedelta:
    """``"30s"``, ``"10m"``, ``"24h"`` or ``"2d"``."""
    number, unit = text[:-1], text[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit():
        raise AssumptionError(key, f"expected a duration like 30s, 10m or 24h, got {text!r}")
    return timedelta(seconds=int(number) * _DURATION_UNITS[unit])
