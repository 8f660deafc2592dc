"""Name -> component entry, built from the registration hooks.

The registry is the only caller of ``fiqabench_register_*``. It calls each hook implementation
on its own, binding the registering plugin into ``register``, so a duplicate name can name both
plugins. Targets stay strings until :meth:`Entry.load` imports them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fiqabench.api import Option
from fiqabench.errors import (
    ComponentUnavailableError,
    ConfigError,
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
)
from fiqabench.plugins import PluginSet

KINDS = {
    "fr_model": ("fiqabench_register_fr_models", "FR model"),
    "method": ("fiqabench_register_fiqa_methods", "FIQA method"),
    "dataset": ("fiqabench_register_datasets", "dataset"),
    "format": ("fiqabench_register_report_writers", "report format"),
    "trainer": ("fiqabench_register_trainers", "trainer"),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_FR_NEEDS = {"none", "embeddings", "gradients", "dropout", "backbone"}
_COMMON = {"version", "summary", "options", "reference", "display_name", "availability"}
_ALLOWED = {
    "fr_model": _COMMON | {"domain", "capabilities"},
    "method": _COMMON
    | {"needs_fr_model", "higher_is_better", "domains", "default_quality_fr_model", "cost_ms_per_image"},
    "dataset": _COMMON | {"domain", "default_fr_model", "default"},
    "format": {"summary", "version"},
    "trainer": {"version", "summary", "options"},
}


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    target: Any
    plugin: str
    distribution: str | None
    version: str = "0"
    summary: str = ""
    reference: str = ""
    display_name: str | None = None
    options: Mapping[str, Option] = field(default_factory=dict)
    availability: Callable[[Mapping[str, Any]], str | None] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How tables print the name (``DifFIQA(R)`` for ``diffiqa-r``)."""
        return self.display_name or self.name

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def load(self) -> Any:
        """Import and return the target (a factory or function)."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            obj: Any = module
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except ImportError as exc:
            raise ComponentUnavailableError(
                f"{KINDS[self.kind][1]} {self.name!r} (plugin {self.plugin}) cannot be imported: {exc}"
            ) from exc
        except AttributeError as exc:
            raise PluginLoadError(
                f"{KINDS[self.kind][1]} {self.name!r}: target {self.target!r} does not exist ({exc})"
            ) from exc
        return obj

    def resolve_options(self, given: Mapping[str, str | Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``; strings are parsed; unknown keys are errors."""
        resolved = {key: opt.default for key, opt in self.options.items()}
        for key, raw in given.items():
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise ConfigError(
                    f"{KINDS[self.kind][1]} {self.name!r} has no option {key!r} (options: {known})"
                )
            option = self.options[key]
            try:
                value = option.parse(raw) if isinstance(raw, str) else raw
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"option {self.name}:{key}={raw!r}: {exc}") from exc
            if option.choices is not None and value not in option.choices:
                choices = ", ".join(map(str, option.choices))
                raise ConfigError(f"option {self.name}:{key}={raw!r}: expected one of {choices}")
            resolved[key] = value
        return resolved

    def unavailable_reason(self, options: Mapping[str, Any] | None = None) -> str | None:
        """Why this component cannot be built with ``options`` (None: it can, as far as we know)."""
        if self.availability is None:
            return None
        try:
            return self.availability(self.resolve_options(options or {}))
        except Exception as exc:  # an availability check must never break listing
            return f"availability check failed: {exc}"


class Registry:
    """All registered components, by kind and name."""

    def __init__(self, plugin_set: PluginSet) -> None:
        pm = plugin_set.pm
        self._distributions = plugin_set.distributions
        self.failures = plugin_set.failures
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, (hook_name, _) in KINDS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                register = self._make_register(kind, impl.plugin_name)
                try:
                    impl.function(register=register)
                except (DuplicateComponentError, ConfigError):
                    raise
                except Exception as exc:
                    raise PluginLoadError(
                        f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                    ) from exc

    def _make_register(self, kind: str, plugin_name: str) -> Callable[..., None]:
        distribution = self._distributions.get(plugin_name)

        def register(name: str, target: Any, **metadata: Any) -> None:
            where = f"plugin {plugin_name!r}"
            if not isinstance(name, str) or not _NAME.match(name):
                raise PluginLoadError(
                    f"{where} registered {KINDS[kind][1]} name {name!r}: names are lowercase kebab-case"
                )
            unknown = set(metadata) - _ALLOWED[kind]
            if unknown:
                raise PluginLoadError(
                    f"{where} registered {name!r} with unknown field(s) {', '.join(sorted(unknown))}"
                )
            existing = self._entries[kind].get(name)
            if existing is not None:
                raise DuplicateComponentError(
                    f"{KINDS[kind][1]} {name!r} is registered twice: by plugin {existing.plugin!r}"
                    f" ({existing.distribution or 'local'}) and by plugin {plugin_name!r}"
                    f" ({distribution or 'local'}); disable one with FIQABENCH_DISABLE_PLUGINS"
                )
            options = dict(metadata.pop("options", {}) or {})
            extra = {
                key: metadata.pop(key)
                for key in list(metadata)
                if key not in {"version", "summary", "reference", "display_name", "availability"}
            }
            if kind == "method":
                extra.setdefault("needs_fr_model", "none")
                extra.setdefault("higher_is_better", True)
                if extra["needs_fr_model"] not in _FR_NEEDS:
                    raise PluginLoadError(
                        f"{where}: method {name!r} needs_fr_model={extra['needs_fr_model']!r},"
                        f" expected one of {', '.join(sorted(_FR_NEEDS))}"
                    )
                if extra["needs_fr_model"] != "none" and "quality_fr_model" not in options:
                    options["quality_fr_model"] = Option(
                        extra.get("default_quality_fr_model"),
                        "FR model the method uses inside itself (default: the dataset's default FR model)",
                    )
            self._entries[kind][name] = Entry(
                kind=kind,
                name=name,
                target=target,
                plugin=plugin_name,
                distribution=distribution,
                version=str(metadata.get("version", "0")),
                summary=metadata.get("summary", ""),
                reference=metadata.get("reference", ""),
                display_name=metadata.get("display_name"),
                options=options,
                availability=metadata.get("availability"),
                metadata=extra,
            )

        return register

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(KINDS[kind][1], name, self._entries[kind]) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> Iterator[Entry]:
        for name in self.names(kind):
            yield self._entries[kind][name]
