"""Typed errors. Every message says what is wrong, where, and how to fix it.

The CLI maps any :class:`FiqabenchError` to one line on stderr and exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterable
import difflib


class FiqabenchError(Exception):
    """Base class of every error fiqabench raises on purpose."""


class ConfigError(FiqabenchError, ValueError):
    """A bad option value, flag combination or config file entry."""


class MetricInputError(FiqabenchError, ValueError):
    """Scores or qualities that no metric can be computed from (NaN, empty, mismatched)."""


class InputFormatError(FiqabenchError, ValueError):
    """A malformed input file; the message starts with ``path:line: field``."""

    def __init__(self, path: object, line: int | None, field: str | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {message}")


class UnknownComponentError(FiqabenchError, KeyError):
    """A name that no plugin registered; offers close matches and lists what exists."""

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        available = sorted(available)
        self.kind, self.name, self.available = kind, name, available
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(available) if available else "none"
        super().__init__(f"unknown {kind} {name!r}.{hint} Available {kind}s: {listing}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class DuplicateComponentError(FiqabenchError):
    """Two plugins registered the same name."""


class MissingArtifactError(FiqabenchError):
    """A weight file, dataset root or optional dependency is missing; says how to provide it."""


class ComponentUnavailableError(FiqabenchError):
    """A registered component that cannot be built here (its reason says why)."""


class ComponentContractError(FiqabenchError):
    """A plugin's component does not keep its contract (wrong object from a factory, capabilities
    that differ from those registered); the message names the plugin and distribution."""


class IncompatibleComponentsError(FiqabenchError):
    """A method that cannot use the FR model it was given (a capability is missing)."""


class DomainMismatchError(FiqabenchError):
    """A component asked to work on data outside its declared domain."""


class PluginLoadError(FiqabenchError):
    """A plugin failed to import or to register."""


class MethodFailure(FiqabenchError):
    """A FIQA method returned NaN or raised on some samples."""
