"""The run configuration, from command-line flags and an optional TOML file.

Flags win over the file. The TOML keys are the flag names with underscores::

    methods = ["diffiqa", "cr-fiqa"]
    datasets = ["lfw"]
    fr_models = ["arcface"]
    fmr = 1e-3
    discard_limits = [0.2, 0.3]
    [method_options.diffiqa]
    n = 10
    [dataset_options.lfw]
    root = "/data/lfw"

``data_root = "/data"`` (or ``--data-root``): datasets whose ``root`` is not given look for their
usual folder under it (``/data/lfw``, ``/data/IJBC``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fiqabench.errors import ConfigError, InputFormatError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib  # type: ignore[no-redef]

ON_FAILURE = ("error", "lowest")


def check_device_name(device: str) -> None:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it exists is checked where torch is loaded)."""
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(device)):
        raise ConfigError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")


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
    #: write ``comparisons.csv`` (every comparison score, the columns ``evaluate`` reads)
    save_comparisons: bool = False
    #: ``local`` (this host) or ``ray``; ``devices``: one worker per device (default: ``device``)
    executor: str = "local"
    devices: list[str] | None = None
    ray_address: str | None = None
    #: Folder holding the datasets under their usual names (``DatasetSpec.data_root_folder``)
    data_root: str | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fr_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        for flag, names in (("--methods", self.methods), ("--datasets", self.datasets),
                            ("--fr-models", self.fr_models), ("--formats", self.formats)):
            repeated = sorted({name for name in names or () if list(names or ()).count(name) > 1})
            if repeated:
                raise ConfigError(f"{flag}: {', '.join(repeated)} given more than once")
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
        check_device_name(self.device)
        for device in self.devices or ():
            check_device_name(device)
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"--executor must be local or ray, got {self.executor!r}")

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


#: The TOML type each run setting must have (checked before anything else sees the values).
_TOML_TYPES: dict[str, str] = {
    "methods": "names", "datasets": "names", "fr_models": "names", "formats": "names",
    "output": "str", "cache_dir": "str", "device": "str", "on_failure": "str", "template_quality": "str",
    "fmr": "number", "discard_limits": "numbers", "batch_size": "int", "seed": "int",
    "allow_domain_mismatch": "bool", "save_comparisons": "bool", "executor": "str", "devices": "names",
    "ray_address": "str", "data_root": "str",
    "method_options": "options", "dataset_options": "options", "fr_options": "options",
}

_TYPE_WORDS = {
    "names": 'a list of names, e.g. ["a", "b"]', "str": "a string", "number": "a number",
    "numbers": "a list of numbers, e.g. [0.2, 0.3]", "int": "an integer", "bool": "true or false",
    "options": "tables of options, e.g. [method_options.diffiqa] with n = 10",
}


def _has_type(value: Any, kind: str) -> bool:
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if kind == "names":
        return isinstance(value, list) and all(isinstance(x, str) and x.strip() for x in value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "number":
        return number(value)
    if kind == "numbers":
        return isinstance(value, list) and all(number(x) for x in value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, dict) and all(
        isinstance(opts, dict) and all(isinstance(v, (str, int, float, bool)) for v in opts.values())
        for opts in value.values()
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFormatError(path, None, None, f"invalid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(path, None, None, f"cannot read: {exc}") from exc


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = _read_toml(path)
    known = {f.name for f in fields(RunConfig)}
    for key, value in data.items():
        if key not in known:
            raise InputFormatError(path, None, key, f"unknown setting; known: {', '.join(sorted(known))}")
        kind = _TOML_TYPES[key]
        if not _has_type(value, kind):
            raise InputFormatError(path, None, key, f"expected {_TYPE_WORDS[kind]}, got {value!r}")
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
    return _read_toml(Path(path))
