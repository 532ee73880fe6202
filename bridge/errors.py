"""The root of the bridge's exception hierarchy.

Every error the bridge raises on purpose derives from :class:`BridgeError`, so the CLI can
turn any of them into a clear message and an exit code instead of a traceback.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class for every error the bridge reports to its user."""


class ConfigError(BridgeError):
    """The configuration file is missing, malformed or inconsistent."""


class StateError(BridgeError):
    """The state store cannot be opened, migrated or read (never shows a password)."""
