"""The plan: every name, option, availability, domain and capability checked before any work.

:func:`build_plan` turns a :class:`~fiqabench.config.RunConfig` into datasets x evaluation FR
models x methods, each a :class:`Component` (a registered spec with resolved options). Nothing is
built here; :mod:`fiqabench.tasks` turns the plan into cacheable tasks.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiqabench.config import RunConfig
from fiqabench.errors import (
    ComponentUnavailableError,
    ConfigError,
    DomainMismatchError,
    IncompatibleComponentsError,
)
from fiqabench.files import path_digest
from fiqabench.registry import ComponentSpec, Registry

log = logging.getLogger("fiqabench")


@dataclass
class Component:
    """A registered spec with resolved options (not built)."""

    entry: Any  # a ComponentSpec subclass
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return self.entry.name

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this component's results: name@version and result-affecting options
        (a weight file by its content digest, a folder by its listing)."""
        values: dict[str, Any] = {}
        for key, value in sorted(self.options.items()):
            option = self.entry.options.get(key)
            if option is not None and not option.affects_result:
                continue
            if option is not None and option.is_path and value:
                value = {"sha256": path_digest(str(value))}
            values[key] = value
        return {"name": self.entry.spec, "options": values}

    def ref(self) -> dict[str, Any]:
        """Plain data that names this component in a task (kind, name, options): what a worker
        process needs to build it from its own registry."""
        return {"kind": self.entry.kind, "name": self.entry.name, "options": dict(self.options)}


@dataclass
class MethodPlan:
    component: Component
    quality_fr: Component | None


@dataclass
class DatasetPlan:
    component: Component
    fr_models: list[Component]
    methods: list[MethodPlan]


@dataclass
class Plan:
    datasets: list[DatasetPlan] = field(default_factory=list)


def sample_seeds(run_seed: int, method_spec: str, dataset: str, ids: list[str] | tuple[str, ...]) -> np.ndarray:
    """Per-sample seeds from (run seed, method@version, dataset, sample id): 63-bit, stable.

    >>> s = sample_seeds(0, "random@1", "synthetic", ["a", "b"])
    >>> s.dtype, bool(s[0] != s[1]), int(sample_seeds(0, "random@1", "synthetic", ["b"])[0]) == int(s[1])
    (dtype('int64'), True, True)
    """
    prefix = f"{run_seed}|{method_spec}|{dataset}|".encode()
    out = np.empty(len(ids), dtype=np.int64)
    for i, sample_id in enumerate(ids):
        digest = hashlib.sha256(prefix + sample_id.encode()).digest()
        out[i] = int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
    return out


def resolve_component(registry: Registry, kind: str, name: str, given: Mapping[str, Any]) -> Component:
    entry: ComponentSpec = registry.get(kind, name)
    return Component(entry, entry.resolve_options(given))


def build_plan(registry: Registry, config: RunConfig) -> Plan:
    """Check every name, option, availability, domain and capability before anything is computed.

    Components that cannot be built here (no weights, no dataset root) are collected and refused
    together in one line, so a new setup learns every option it must set from one run.
    """
    for kind, table in (
        ("method", config.method_options),
        ("dataset", config.dataset_options),
        ("fr_model", config.fr_options),
    ):
        for name, given in table.items():
            # options of unknown components, and bad values for components this run does not use,
            # are errors too: a typo must not pass silently
            registry.get(kind, name).resolve_options(given)

    data_root = _data_root(config)
    dataset_names = config.datasets or [e.name for e in registry.entries("dataset") if e.default]
    if not dataset_names:
        raise ConfigError("no dataset given and none is registered as the default: pass --datasets NAME")
    problems = _Problems()
    plan = Plan()
    for dataset_name in dataset_names:
        dataset = _dataset_component(registry, config, dataset_name, data_root, problems)
        domain = dataset.entry.domain
        default_fr = _default_fr_model(registry, config, dataset.entry.default_fr_models)
        if config.fr_models:
            fr_names = list(config.fr_models)
        elif default_fr:
            fr_names = [default_fr]
        else:
            fr_names = []
            _no_default_fr_model(registry, config, dataset, problems)
        fr_models = [
            _fr_component(registry, config, name, domain, dataset_name, "evaluation", problems) for name in fr_names
        ]
        methods: list[MethodPlan] = []
        explicit = config.methods is not None
        for method_name in config.methods or registry.names("method"):
            method = resolve_component(registry, "method", method_name, config.method_options.get(method_name, {}))
            domains = method.entry.domains_for(method.options)
            if domains and domain not in domains:
                hint = method.entry.domain_hint
                if not explicit:
                    if hint:  # a method that would apply with other options: say how
                        log.warning("skipping method %s on %s: %s", method_name, dataset_name, hint)
                    continue
                if not config.allow_domain_mismatch:
                    raise DomainMismatchError(
                        f"method {method_name!r} works on {', '.join(domains)} datasets"
                        f"{' with these options' if callable(method.entry.domains) else ''}, but {dataset_name!r}"
                        f" is {domain!r}{': ' + hint if hint else ''}; or pass --allow-domain-mismatch"
                    )
            reason = method.entry.unavailable_reason(method.options)
            if reason:
                if not explicit:
                    log.warning("skipping method %s: %s", method_name, reason)
                    continue
                problems.add(f"method {method_name!r} is unavailable: {reason}")
            quality_fr = None
            if method.entry.fr_need(method.options) != "none":
                fr_name = method.options.get("quality_fr_model") or default_fr or (fr_names[0] if fr_names else None)
                if fr_name is None:  # no default FR model is available: already reported
                    continue
                quality_fr = _fr_component(registry, config, fr_name, domain, dataset_name, "quality", problems)
                method.options["quality_fr_model"] = fr_name
                refusal = registry.fr_refusal(method.entry, method.options, quality_fr.entry, quality_fr.options)
                if refusal:
                    if not explicit:
                        log.warning("skipping method %s: %s", method_name, refusal)
                        continue
                    raise IncompatibleComponentsError(
                        f"{refusal}: choose another with --method-option {method_name}:quality_fr_model=NAME"
                    )
            methods.append(MethodPlan(method, quality_fr))
        if not methods and not problems:
            raise ConfigError(f"no FIQA method applies to dataset {dataset_name!r}; see fiqabench list methods")
        plan.datasets.append(DatasetPlan(dataset, fr_models, methods))
    problems.raise_if_any()
    return plan


class _Problems:
    """Why components cannot be built, in order, each once (an FR model shared by seven datasets
    is named once); datasets given no root at all are named together, first."""

    def __init__(self) -> None:
        self.items: list[str] = []
        #: (dataset, its folder under a data root, its full message)
        self.rootless: list[tuple[str, str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.items or self.rootless)

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)

    def add_rootless(self, name: str, folder: str, text: str) -> None:
        self.rootless.append((name, folder, text))

    def raise_if_any(self) -> None:
        if len(self.rootless) == 1:
            head = [self.rootless[0][2]]
        elif self.rootless:
            names = ", ".join(name for name, _, _ in self.rootless)
            folders = ", ".join(f"DIR/{folder}/" for folder in dict.fromkeys(f for _, f, _ in self.rootless))
            head = [
                f"datasets {names} are unavailable: no root given; pass --data-root DIR holding {folders}"
                " or --dataset-option NAME:root=DIR for each (fiqabench list datasets shows the layout each expects)"
            ]
        else:
            head = []
        if head or self.items:
            raise ComponentUnavailableError("; ".join(head + self.items))


def _data_root(config: RunConfig) -> Path | None:
    if not config.data_root:
        return None
    root = Path(str(config.data_root)).expanduser()
    if not root.is_dir():
        raise ConfigError(f"--data-root {config.data_root}: no such folder")
    return root


def _dataset_component(
    registry: Registry, config: RunConfig, name: str, data_root: Path | None, problems: _Problems
) -> Component:
    """The dataset with its options; a ``root`` not given is looked for under the data root."""
    spec = registry.get("dataset", name)
    given = dict(config.dataset_options.get(name, {}))
    folder = spec.data_root_folder
    from_data_root = folder is not None and data_root is not None and not given.get("root")
    if from_data_root:
        given["root"] = str(data_root / folder)
    component = Component(spec, spec.resolve_options(given))
    reason = spec.unavailable_reason(component.options)
    if reason:
        if from_data_root:
            reason += f" (its folder under --data-root {config.data_root})"
        elif folder is not None and not given.get("root"):
            reason += f"; or pass --data-root DIR with it in DIR/{folder}/"
            problems.add_rootless(name, folder, f"dataset {name!r} is unavailable: {reason}")
            return component
        problems.add(f"dataset {name!r} is unavailable: {reason}")
    return component


def _default_fr_model(registry: Registry, config: RunConfig, candidates: tuple[str, ...]) -> str | None:
    """The dataset's default FR model: its one default, or the first of several that is available
    with the run's options (None: none is)."""
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        if _fr_unavailable(registry, config, candidate) is None:
            return candidate
    return None


def _fr_unavailable(registry: Registry, config: RunConfig, name: str) -> str | None:
    if name not in registry.names("fr_model"):  # its plugin is not loaded
        return "not registered"
    return registry.get("fr_model", name).unavailable_reason(config.fr_options.get(name, {}))


def _no_default_fr_model(registry: Registry, config: RunConfig, dataset: Component, problems: _Problems) -> None:
    candidates = dataset.entry.default_fr_models
    if not candidates:
        raise ConfigError(
            f"dataset {dataset.name!r} has no default FR model: pass --fr-models NAME "
            f'or set fr_models = ["NAME"] in --config FILE.toml (see fiqabench list fr-models)'
        )
    reasons = "; ".join(
        f"{name}: {_fr_unavailable(registry, config, name)}"
        for name in candidates
    )
    # without the dataset's name, so datasets sharing the defaults are told once
    problems.add(
        f"no evaluation FR model is available for {dataset.entry.domain or 'these'} datasets (the first"
        f" available of {', '.join(candidates)} is used; {reasons}); make one available or pass --fr-models NAME"
    )


def _fr_component(
    registry: Registry, config: RunConfig, name: str, domain: str | None, dataset: str, role: str,
    problems: _Problems,
) -> Component:
    fr = resolve_component(registry, "fr_model", name, config.fr_options.get(name, {}))
    reason = fr.entry.unavailable_reason(fr.options)
    if reason:
        problems.add(f"FR model {name!r} is unavailable: {reason}")
    fr_domain = fr.entry.domain
    if domain and fr_domain and fr_domain != domain and not config.allow_domain_mismatch:
        raise DomainMismatchError(
            f"FR model {name!r} ({role}) was made for {fr_domain!r} images but dataset {dataset!r} "
            f"is {domain!r}; choose another with --fr-models, or pass --allow-domain-mismatch"
        )
    return fr
