"""Time zone names: Windows ⇄ IANA (CLDR ``windowsZones``) and resolution to ``ZoneInfo``.

Microsoft Graph and Nexudus speak Windows zone ids ("GMT Standard Time"); Google, CalDAV and
the canonical model speak IANA names ("Europe/London"). Every mapping module resolves an outside
zone name here, so an unknown name fails the same way everywhere: ``UnknownTimezone`` naming the
booking and the field.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from mappings.errors import UnknownTimezone
from mappings.windows_zones import IANA_TO_WINDOWS, WINDOWS_TO_IANA

#: Zone names Microsoft services use that are in neither table.
MICROSOFT_ALIASES: dict[str, str] = {
    "tzone://Microsoft/Utc": "Etc/UTC",
    "Coordinated Universal Time": "Etc/UTC",
}

#: Names zoneinfo may find on a host that do not name a fixed zone: ``localtime`` is whatever
#: the machine is set to, ``posixrules`` a tzcode default. Accepting them would make a mapping
#: depend on the host.
HOST_DEPENDENT_NAMES = frozenset({"localtime", "posixrules"})

_WINDOWS_BY_FOLDED_NAME = {name.casefold(): name for name in WINDOWS_TO_IANA}


def windows_to_iana(name: str) -> str | None:
    """CLDR's default IANA zone for a Windows zone id (case-insensitive), or None."""
    key = name.strip()
    if key in WINDOWS_TO_IANA:
        return WINDOWS_TO_IANA[key]
    if key in MICROSOFT_ALIASES:
        return MICROSOFT_ALIASES[key]
    canonical = _WINDOWS_BY_FOLDED_NAME.get(key.casefold())
    return WINDOWS_TO_IANA[canonical] if canonical else None


def iana_to_windows(name: str) -> str | None:
    """The Windows zone id for an IANA name (aliases included), or None."""
    return IANA_TO_WINDOWS.get(name.strip())


def is_iana(name: str) -> bool:
    """Whether ``name`` is an IANA zone name this host's zoneinfo knows."""
    return name not in HOST_DEPENDENT_NAMES and name in _known_iana_names()


def resolve_zone(name: str, *, booking: str | None = None, field: str | None = None) -> str:
    """The IANA name for an IANA or Windows zone name; UnknownTimezone names the field."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownTimezone(f"time zone {name!r} is empty", booking=booking, field=field)
    key = name.strip()
    if is_iana(key):
        return key
    iana = windows_to_iana(key)
    if iana is not None and is_iana(iana):
        return iana
    raise UnknownTimezone(
        f"unknown time zone {key!r}: neither an IANA name nor a Windows zone id",
        booking=booking,
        field=field,
    )


@cache
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA or Windows zone name (cached; raises UnknownTimezone)."""
    iana = resolve_zone(name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed but unreadable
        raise UnknownTimezone(f"time zone {iana!r} cannot be loaded: {exc}") from exc


@cache
def _known_iana_names() -> frozenset[str]:
    """Every zone name zoneinfo can load here (read once: it lists the tz database)."""
    return frozenset(available_timezones())
