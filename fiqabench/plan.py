"""The plan: every name, option, availability, domain and capability checked before any work.

:func:`build_plan` turns a :class:`~fiqabench.config.RunConfig` into datasets x evaluation FR
models x methods, each a :class:`Component` (a registered spec with resolved options). Nothing is
built here; :mod:`fiqabench.tasks` turns the plan into cacheable tasks.
"""

from __future__ import annotations

import hashlib
import logging
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
    """Check every name, option, availability, domain and capability before anything is computed."""
    for kind, table in (
        ("method", config.method_options),
        ("dataset", config.dataset_options),
        ("fr_model", config.fr_options),
    ):
        for name, given in table.items():
            # options of unknown components, and bad values for components this run does not use,
            # are errors too: a typo must not pass silently
            registry.get(kind, name).resolve_options(given)

    dataset_names = config.datasets or [e.name for e in registry.entries("dataset") if e.default]
    if not dataset_names:
        raise ConfigError("no dataset given and none is registered as the default: pass --datasets NAME")
    plan = Plan()
    for dataset_name in dataset_names:
        dataset = resolve_component(registry, "dataset", dataset_name, config.dataset_options.get(dataset_name, {}))
        reason = dataset.entry.unavailable_reason(dataset.options)
        if reason:
            raise ComponentUnavailableError(f"dataset {dataset_name!r} is unavailable: {reason}")
        domain = dataset.entry.domain
        default_fr = dataset.entry.default_fr_model
        fr_names = config.fr_models or ([default_fr] if default_fr else [])
        if not fr_names:
            raise ConfigError(
                f"dataset {dataset_name!r} has no default FR model: pass --fr-models NAME "
                f'or set fr_models = ["NAME"] in --config FILE.toml (see fiqabench list fr-models)'
            )
        fr_models = [
            _fr_component(registry, config, name, domain, dataset_name, role="evaluation") for name in fr_names
        ]
        methods: list[MethodPlan] = []
        explicit = config.methods is not None
        for method_name in config.methods or registry.names("method"):
            method = resolve_component(registry, "method", method_name, config.method_options.get(method_name, {}))
            domains = method.entry.domains
            if domains and domain not in domains:
                if explicit:
                    raise DomainMismatchError(
                        f"method {method_name!r} works on {', '.join(domains)} datasets, "
                        f"but {dataset_name!r} is {domain!r}"
                    )
                continue
            reason = method.entry.unavailable_reason(method.options)
            if reason:
                if explicit:
                    raise ComponentUnavailableError(f"method {method_name!r} is unavailable: {reason}")
                log.warning("skipping method %s: %s", method_name, reason)
                continue
            quality_fr = None
            if method.entry.fr_need(method.options) != "none":
                fr_name = method.options.get("quality_fr_model") or default_fr or fr_names[0]
                quality_fr = _fr_component(registry, config, fr_name, domain, dataset_name, role="quality")
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
        if not methods:
            raise ConfigError(f"no FIQA method applies to dataset {dataset_name!r}; see fiqabench list methods")
        plan.datasets.append(DatasetPlan(dataset, fr_models, methods))
    return plan


def _fr_component(
    registry: Registry, config: RunConfig, name: str, domain: str | None, dataset: str, role: str
) -> Component:
    fr = resolve_component(registry, "fr_model", name, config.fr_options.get(name, {}))
    reason = fr.entry.unavailable_reason(fr.options)
    if reason:
        raise ComponentUnavailableError(f"FR model {name!r} is unavailable: {reason}")
    fr_domain = fr.entry.domain
    if domain and fr_domain and fr_domain != domain and not config.allow_domain_mismatch:
        raise DomainMismatchError(
            f"FR model {name!r} ({role}) was made for {fr_domain!r} images but dataset {dataset!r} "
            f"is {domain!r}; choose another with --fr-models, or pass --allow-domain-mismatch"
        )
    return fr
