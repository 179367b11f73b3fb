"""One small exception family. Every message says what went wrong *and* what to do next.

The CLI prints ``str(error)`` and exits non-zero; the HTTP layer maps ``status`` to a response.
Nothing below the CLI prints or exits on its own.
"""

from __future__ import annotations


class TinyOTAError(Exception):
    """Base class: a refusal the user can act on. ``hint`` is the next step, if there is one."""

    status = 400  # what the HTTP layer answers when this reaches a handler

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(TinyOTAError):
    """The configuration file cannot be used. Carries every problem found, not just the first."""

    def __init__(self, problems: list[str], path: str | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        head = f"{len(problems)} problem(s) in {path}" if path else f"{len(problems)} config problem(s)"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))

    def __str__(self) -> str:
        return self.message


class StoreError(TinyOTAError):
    """A release could not be stored or read."""


class ReleaseExists(StoreError):
    status = 409


class StorageFull(StoreError):
    status = 507  # Insufficient Storage (RFC 4918): the server's disk, not the request, is the problem


class NotFound(TinyOTAError):
    status = 404


class StateError(TinyOTAError):
    """The registry's state file is unusable (corrupt, from a newer version, unwritable)."""

    status = 503  # the server cannot keep its word right now; nothing was announced


class BrokerError(TinyOTAError):
    """The MQTT broker refused us or cannot be reached."""

    status = 503
