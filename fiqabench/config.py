"""The run configuration, from command-line flags and an optional TOML file.

Flags win over the file. The TOML keys are the flag names with underscores::

    methods = ["diffiqa", "cr-fiqa"]
    datasets = ["lfw"]
    fr_models = ["arcface-r100"]
    fmr = 1e-3
    discard_limits = [0.2, 0.3]
    [method_options.diffiqa]
    n = 10
    [dataset_options.lfw]
    root = "/data/lfw"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fiqabench.errors import ConfigError, InputFormatError

ON_FAILURE = ("error", "lowest")


@dataclass
class RunConfig:
    """Everything that defines a run (what is computed and where results go)."""

    methods: list[str] | None = None
    datasets: list[str] | None = None
    fr_models: list[str] | None = None
    output: str | None = None
    cache_dir: str | None = None
    fmr: float = 1e-3
    discard_limits: list[float] = field(default_factory=lambda: [0.2, 0.3])
    device: str = "cpu"
    batch_size: int = 64
    seed: int = 0
    on_failure: str = "error"
    allow_domain_mismatch: bool = False
    template_quality: str | None = None
    formats: list[str] | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fr_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        if not 0.0 < float(self.fmr) < 1.0:
            raise ConfigError(f"--fmr must be in (0, 1), got {self.fmr}")
        if not self.discard_limits:
            raise ConfigError("--discard-limits needs at least one value")
        for limit in self.discard_limits:
            if not 0.0 < float(limit) <= 1.0:
                raise ConfigError(f"--discard-limits: each limit must be in (0, 1], got {limit}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.on_failure not in ON_FAILURE:
            raise ConfigError(f"--on-failure must be one of {', '.join(ON_FAILURE)}, got {self.on_failure!r}")
        if self.template_quality not in (None, "min", "mean"):
            raise ConfigError(f"--template-quality must be min or mean, got {self.template_quality!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"--device must be cpu, cuda, cuda:N or mps, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def split_names(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None stays None.

    >>> split_names("diffiqa, cr-fiqa")
    ['diffiqa', 'cr-fiqa']
    """
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"expected a comma-separated list of names, got {text!r}")
    return names


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{flag}: expected comma-separated numbers, got {text!r}") from exc


def parse_component_options(values: Sequence[str] | None, flag: str) -> dict[str, dict[str, str]]:
    """``["diffiqa:n=5", "diffiqa:t=20"]`` -> ``{"diffiqa": {"n": "5", "t": "20"}}``.

    >>> parse_component_options(["diffiqa:n=5", "lfw:root=/data/lfw"], "--method-option")
    {'diffiqa': {'n': '5'}, 'lfw': {'root': '/data/lfw'}}
    """
    options: dict[str, dict[str, str]] = {}
    for value in values or ():
        name, sep, assignment = value.partition(":")
        key, eq, raw = assignment.partition("=")
        if not sep or not eq or not name or not key:
            raise ConfigError(f"{flag} {value!r}: expected NAME:KEY=VALUE")
        options.setdefault(name.strip(), {})[key.strip()] = raw
    return options


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFormatError(path, None, None, f"invalid TOML: {exc}") from exc
    known = {f.name for f in fields(RunConfig)}
    for key in data:
        if key not in known:
            raise InputFormatError(path, None, key, f"unknown setting; known: {', '.join(sorted(known))}")
    return data


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    """A config from the TOML values, overridden by flags that were given (not None)."""
    values: dict[str, Any] = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if key.endswith("_options"):
            merged = {name: dict(opts) for name, opts in values.get(key, {}).items()}
            for name, opts in value.items():
                merged.setdefault(name, {}).update(opts)
            values[key] = merged
        else:
            values[key] = value
    config = RunConfig(**values)
    config.validate()
    return config


def load_toml_table(path: str | Path) -> dict[str, Any]:
    """A TOML file as a plain table (trainer options)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFormatError(path, None, None, f"invalid TOML: {exc}") from exc
