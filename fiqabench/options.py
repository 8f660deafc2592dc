"""Option parsers for plugin authors, and the one function that resolves options.

An option's ``parse`` receives the command-line string *or* a typed value (from a TOML file or a
direct call), so the parsers below check both, and a plugin checks an option once, where it is
declared::

    from fiqabench.api import Option
    from fiqabench.options import boolean, choice, integer, number, path

    OPTIONS = {
        "n": Option(10, "repeats", integer(min=1)),
        "t": Option(5, "timestep", integer(min=1, max=999)),
        "lr": Option(1e-3, "learning rate", number(min=0.0, min_inclusive=False)),
        "flip": Option(True, "use the flipped image", boolean),
        "weights": Option(None, "weight file", path, is_path=True),
    }

A factory called directly (tests, notebooks) gets the same checks from :func:`resolve`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from fiqabench.api import Option, parse_bool
from fiqabench.errors import ConfigError

__all__ = ["boolean", "choice", "integer", "number", "path", "resolve"]


def boolean(value: str | bool) -> bool:
    """``true/false/1/0/yes/no/on/off`` (any case), or a bool.

    >>> boolean("Yes"), boolean(False)
    (True, False)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return parse_bool(str(value))


def _bounds(kind: str, min: float | None, max: float | None, min_inclusive: bool) -> str:
    low = "" if min is None else (f">= {min}" if min_inclusive else f"> {min}")
    high = "" if max is None else f"<= {max}"
    return " and ".join(part for part in (low, high) if part) or kind


def integer(*, min: int | None = None, max: int | None = None) -> Callable[[Any], int]:
    """A parser for integers in ``[min, max]`` (either bound optional).

    >>> integer(min=1)("3"), integer(min=1, max=9)(9)
    (3, 9)
    >>> integer(min=1)("0")
    Traceback (most recent call last):
    ...
    ValueError: expected an integer >= 1, got '0'
    """

    def parse(value: Any) -> int:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            number_ = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {value!r}") from None
        if (min is not None and number_ < min) or (max is not None and number_ > max):
            raise ValueError(f"expected an integer {_bounds('', min, max, True)}, got {value!r}")
        return number_

    parse.__name__ = "integer"
    return parse


def number(
    *, min: float | None = None, max: float | None = None, min_inclusive: bool = True
) -> Callable[[Any], float]:
    """A parser for finite floats in a range (``min_inclusive=False``: strictly above ``min``).

    >>> number(min=0.0, min_inclusive=False)("1e-3")
    0.001
    >>> number(min=0.0, min_inclusive=False)(0)
    Traceback (most recent call last):
    ...
    ValueError: expected a number > 0.0, got 0
    """

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        bad_low = min is not None and (x < min if min_inclusive else x <= min)
        if x != x or x in (float("inf"), float("-inf")) or bad_low or (max is not None and x > max):
            raise ValueError(f"expected a number {_bounds('', min, max, min_inclusive)}, got {value!r}")
        return x

    parse.__name__ = "number"
    return parse


def choice(*values: str) -> Callable[[Any], str]:
    """A parser for one of ``values`` (also declare them as ``Option(choices=...)`` for listings).

    >>> choice("fp32", "bf16")("bf16")
    'bf16'
    """

    def parse(value: Any) -> str:
        text = str(value)
        if text not in values:
            raise ValueError(f"expected one of {', '.join(values)}, got {value!r}")
        return text

    parse.__name__ = "choice"
    return parse


def path(value: Any) -> str | None:
    """A file or folder path (``~`` expanded); empty means none. Existence is the component's
    ``availability`` check, so that listing can say what is missing without failing."""
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    return os.path.expanduser(text) if text.strip() else None


def resolve(
    options: Mapping[str, Option], given: Mapping[str, Any], *, name: str, kind: str = "component"
) -> dict[str, Any]:
    """Defaults overlaid with ``given``, every given value parsed and checked (strings from the
    command line and typed values from TOML alike); unknown keys are errors naming the known ones.

    >>> resolve({"n": Option(10, "repeats", integer(min=1))}, {"n": "5"}, name="diffiqa")
    {'n': 5}
    >>> resolve({"n": Option(10, "repeats", integer(min=1))}, {"n": 0}, name="diffiqa")
    Traceback (most recent call last):
    ...
    fiqabench.errors.ConfigError: option diffiqa:n=0: expected an integer >= 1, got 0
    """
    resolved = {key: option.default for key, option in options.items()}
    for key, raw in given.items():
        if key not in options:
            known = ", ".join(sorted(options)) or "none"
            raise ConfigError(f"{kind} {name!r} has no option {key!r} (options: {known})")
        option = options[key]
        if raw is None or _is_default(raw, option.default):
            continue  # already valid: resolving resolved options again (a worker, build()) is a no-op
        try:
            value = _parse(option.parse, raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"option {name}:{key}={raw!r}: {exc}") from exc
        if option.choices is not None and value not in option.choices:
            raise ConfigError(f"option {name}:{key}={raw!r}: expected one of {', '.join(map(str, option.choices))}")
        resolved[key] = value
    return resolved


def _is_default(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # values whose == is not a bool (arrays)
        return False


def _parse(parse: Callable[[Any], Any], raw: Any) -> Any:
    """``parse(raw)``; a typed value (TOML) that a parser written for command-line strings cannot
    take is handed over as its text."""
    try:
        return parse(raw)
    except (TypeError, AttributeError):
        if isinstance(raw, str):
            raise
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        return parse(text)
