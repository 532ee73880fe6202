"""Typed failures of booking-provider calls.

Every provider client raises one of these, never a raw ``httpx`` exception, so the sync
executor can decide per kind: re-plan on a conflict, record a validation error against the one
booking, back off on throttling, skip the room for this pass when the provider is down.

Messages carry the provider's own words (``Message``, ``Errors[]``, ``error_description``) but
never a credential, token or request body: those are not passed in, so they cannot leak.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import BridgeError


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field the provider rejected, as in Nexudus's ``Errors[]`` entries."""

    property_name: str
    message: str

    def __str__(self) -> str:
        return f"{self.property_name}: {self.message}" if self.property_name else self.message


class ProviderError(BridgeError):
    """A provider call failed; carries provider, operation, HTTP status and the provider's text."""

    def __init__(
        self,
        provider: str,
        operation: str,
        status: int | None,
        message: str,
        *,
        errors: tuple[FieldError, ...] = (),
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.status = status
        self.message = message
        self.errors = errors
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{provider}: {operation} failed{code}: {message}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, operation={self.operation!r}, "
            f"status={self.status!r}, message={self.message!r})"
        )


class ProviderAuthError(ProviderError):
    """The credentials were refused, or a fresh token was refused too."""


class ProviderNotFound(ProviderError):
    """The record or route does not exist (HTTP 404)."""


class ProviderValidationError(ProviderError):
    """The provider rejected the request body; ``errors`` lists the fields it named."""


class ProviderConflict(ProviderError):
    """The request clashes with the provider's state, e.g. the resource is not available."""


class ProviderThrottled(ProviderError):
    """The provider kept throttling after every allowed retry."""

    def __init__(
        self,
        provider: str,
        operation: str,
        status: int | None,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, operation, status, message)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or kept failing (5xx, timeouts, dropped connections)."""
