"""Name -> typed component spec, built from the registration hooks.

The registry is the only caller of ``fiqabench_register_*``. It calls each hook implementation on
its own, binding the registering plugin into ``register``, so a duplicate name can name both
plugins. ``register(name, target, **fields)`` builds one spec per kind (:class:`MethodSpec`,
:class:`FRModelSpec`, :class:`DatasetSpec`, :class:`FormatSpec`, :class:`TrainerSpec`), checked
once, when registered: an unknown field or a value of the wrong type is a one-line error naming
the plugin. Targets stay ``"module:attr"`` strings until :meth:`ComponentSpec.load` imports them,
and :meth:`ComponentSpec.build` checks what a factory returns against its Protocol.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fiqabench.api import Dataset, FaceRecognitionModel, FIQAMethod, FRCapabilities, Option
from fiqabench.errors import (
    ComponentContractError,
    ComponentUnavailableError,
    ConfigError,
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
)
from fiqabench.options import resolve
from fiqabench.plugins import PluginSet

KINDS = {
    "fr_model": ("fiqabench_register_fr_models", "FR model"),
    "method": ("fiqabench_register_fiqa_methods", "FIQA method"),
    "dataset": ("fiqabench_register_datasets", "dataset"),
    "format": ("fiqabench_register_report_writers", "report format"),
    "trainer": ("fiqabench_register_trainers", "trainer"),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
FR_NEEDS = ("none", "embeddings", "gradients", "dropout", "backbone")

#: What each need asks of the FR model's capabilities, in the words of a refusal.
_NEED_TEXT = {
    "gradients": ("input gradients", lambda c: c.differentiable),
    # SER-FIQ-style: the head's dropout layer sampled many times after one trunk pass
    "dropout": ("a dropout layer in its head", lambda c: c.has_dropout and c.has_trunk_head),
    "backbone": ("a trunk/head split", lambda c: c.has_trunk_head),
}


class _Invalid(Exception):
    """A field of a spec with a wrong value (turned into a PluginLoadError naming the plugin)."""


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    """What every registered component has. ``target`` is a ``"module:attr"`` string (or the
    object itself) for a factory ``factory(*, options, device)``."""

    kind: ClassVar[str] = ""
    name: str
    target: Any
    plugin: str
    distribution: str | None = None
    version: str = "0"
    summary: str = ""
    reference: str = ""
    display_name: str | None = None
    options: Mapping[str, Option] = field(default_factory=dict)
    #: ``availability(resolved_options) -> reason | None``: a light check (no torch) of why the
    #: component cannot be built, shown by ``fiqabench list``.
    availability: Callable[[Mapping[str, Any]], str | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", str(self.version))
        if not isinstance(self.summary, str) or not isinstance(self.reference, str):
            raise _Invalid("summary and reference must be strings")
        if self.display_name is not None and not isinstance(self.display_name, str):
            raise _Invalid(f"display_name must be a string, got {self.display_name!r}")
        if not isinstance(self.options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Option) for k, v in self.options.items()
        ):
            raise _Invalid("options must map option names to fiqabench.api.Option")
        object.__setattr__(self, "options", dict(self.options))
        if self.availability is not None and not callable(self.availability):
            raise _Invalid("availability must be a function of the resolved options")
        if not (isinstance(self.target, str) and ":" in self.target) and not callable(self.target):
            raise _Invalid(f"target must be 'module:attr' or a callable, got {self.target!r}")

    @property
    def kind_label(self) -> str:
        return KINDS[self.kind][1]

    @property
    def label(self) -> str:
        """How tables print the name (``DifFIQA(R)`` for ``diffiqa-r``)."""
        return self.display_name or self.name

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def origin(self) -> str:
        return f"plugin {self.plugin!r} ({self.distribution or 'local file'})"

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
                f"{self.kind_label} {self.name!r} ({self.origin}) cannot be imported: {exc}"
            ) from exc
        except AttributeError as exc:
            raise PluginLoadError(
                f"{self.kind_label} {self.name!r}: target {self.target!r} does not exist ({exc})"
            ) from exc
        return obj

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, parsed and checked; unknown keys are errors."""
        return resolve(self.options, given, name=self.name, kind=self.kind_label)

    def unavailable_reason(self, options: Mapping[str, Any] | None = None) -> str | None:
        """Why this component cannot be built with ``options`` (None: it can, as far as we know)."""
        if self.availability is None:
            return None
        try:
            return self.availability(self.resolve_options(options or {}))
        except Exception as exc:  # an availability check must never break listing
            return f"availability check failed: {exc}"

    def build(self, options: Mapping[str, Any], device: str, *, resolved: bool = False) -> Any:
        """Call the factory with the options resolved (defaults filled in, values checked; pass
        ``resolved=True`` for options that already were) and check the result against the kind's
        Protocol."""
        options = dict(options) if resolved else self.resolve_options(options)
        component = self.load()(options=options, device=device)
        protocol = _PROTOCOLS.get(self.kind)
        if protocol is not None:
            missing = [name for name in _protocol_members(protocol) if not hasattr(component, name)]
            if missing:
                raise ComponentContractError(
                    f"{self.kind_label} {self.name!r} from {self.origin}: its factory returned a "
                    f"{type(component).__name__} that is not a {protocol.__name__} (missing "
                    f"{', '.join(missing)})"
                )
        return component


@dataclass(frozen=True, kw_only=True)
class MethodSpec(ComponentSpec):
    """A FIQA method."""

    kind: ClassVar[str] = "method"
    #: What the method needs from the FR model it uses inside itself (:data:`fiqabench.api.FRNeed`),
    #: or a function of the resolved options returning it.
    needs_fr_model: str | Callable[[Mapping[str, Any]], str] = "none"
    #: False: the runner negates the scores once (quality is higher-is-better everywhere).
    higher_is_better: bool = True
    #: Only datasets of these domains (``oracle``: synthetic severities); None: any. Or a function
    #: of the resolved options returning them (weights trained on one domain: DifFIQA's shipped
    #: embedded DDPM); ``--allow-domain-mismatch`` overrides the check.
    domains: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...] | None] | None = None
    #: What to change to use the method on other domains (one clause, e.g. the option that loads
    #: real weights); appended to the domain refusal.
    domain_hint: str = ""
    #: Default of the ``quality_fr_model`` option (None: the dataset's default FR model).
    default_quality_fr_model: str | None = None
    #: A rough cost per image on a CPU, for shard sizes and run-time estimates before any
    #: runtime has been recorded.
    cost_ms_per_image: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.needs_fr_model) and self.needs_fr_model not in FR_NEEDS:
            raise _Invalid(f"needs_fr_model={self.needs_fr_model!r}, expected one of {', '.join(FR_NEEDS)}")
        if not isinstance(self.higher_is_better, bool):
            raise _Invalid(f"higher_is_better must be a bool, got {self.higher_is_better!r}")
        if self.domains is not None and not callable(self.domains):
            object.__setattr__(self, "domains", _domain_names(self.domains, _Invalid))
        if not isinstance(self.domain_hint, str):
            raise _Invalid(f"domain_hint must be a string, got {self.domain_hint!r}")
        _check_cost(self.cost_ms_per_image)
        if self.fr_need(None) != "none" and "quality_fr_model" not in self.options:
            options = dict(self.options)
            options["quality_fr_model"] = Option(
                self.default_quality_fr_model,
                "FR model the method uses inside itself (default: the dataset's default FR model)",
            )
            object.__setattr__(self, "options", options)

    def domains_for(self, options: Mapping[str, Any] | None) -> tuple[str, ...] | None:
        """The domains the method works on with these resolved options (defaults when None)."""
        if not callable(self.domains):
            return self.domains
        given = options if options is not None else {k: o.default for k, o in self.options.items()}
        value = self.domains(given)
        return None if value is None else _domain_names(value, ComponentContractError, self.name)

    def fr_need(self, options: Mapping[str, Any] | None) -> str:
        """The need for these resolved options (defaults when None)."""
        if not callable(self.needs_fr_model):
            return self.needs_fr_model
        need = self.needs_fr_model(options if options is not None else {k: o.default for k, o in self.options.items()})
        if need not in FR_NEEDS:
            raise ComponentContractError(f"method {self.name!r}: needs_fr_model returned {need!r}")
        return need


@dataclass(frozen=True, kw_only=True)
class FRModelSpec(ComponentSpec):
    """A face recognition model."""

    kind: ClassVar[str] = "fr_model"
    #: The images the model was made for (``aligned-112-face``, ``synthetic``).
    domain: str | None = None
    #: What the model offers to methods (gradients, dropout, trunk/head split), or a function of
    #: the resolved options returning it (an ONNX model's backend). None: nothing is promised
    #: beyond embeddings.
    capabilities: FRCapabilities | Callable[[Mapping[str, Any]], FRCapabilities] | None = None
    cost_ms_per_image: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.capabilities is not None and not (
            isinstance(self.capabilities, FRCapabilities) or callable(self.capabilities)
        ):
            raise _Invalid("capabilities must be an FRCapabilities or a function of the options returning one")
        _check_cost(self.cost_ms_per_image)

    def capabilities_for(self, options: Mapping[str, Any] | None = None) -> FRCapabilities:
        caps = self.capabilities
        if caps is None:
            return FRCapabilities(differentiable=False, has_dropout=False, has_trunk_head=False)
        if isinstance(caps, FRCapabilities):
            return caps
        value = caps(self.resolve_options(options or {}))
        if not isinstance(value, FRCapabilities):
            raise ComponentContractError(f"FR model {self.name!r}: capabilities() returned {value!r}")
        return value

    def build(self, options: Mapping[str, Any], device: str, *, resolved: bool = False) -> Any:
        model = super().build(options, device, resolved=resolved)
        if self.capabilities is not None and getattr(model, "capabilities", None) != self.capabilities_for(options):
            raise ComponentContractError(
                f"FR model {self.name!r} from {self.origin}: the built model's capabilities "
                f"{model.capabilities} differ from those registered {self.capabilities_for(options)}"
            )
        return model


@dataclass(frozen=True, kw_only=True)
class DatasetSpec(ComponentSpec):
    """A benchmark."""

    kind: ClassVar[str] = "dataset"
    domain: str | None = None
    #: The evaluation FR model when ``--fr-models`` is not given; a tuple: the first of them that
    #: is available with the run's options (the paper's four on aligned 112 px faces).
    default_fr_model: str | tuple[str, ...] | None = None
    #: Part of ``fiqabench run`` without ``--datasets`` (the embedded benchmark).
    default: bool = False
    #: The dataset's usual folder name under ``--data-root DIR``: when its ``root`` option is not
    #: given, the plan sets it to ``DIR/<data_root_folder>``. None: not found under a data root.
    data_root_folder: str | None = None
    #: Methods whose scores are not independent of this dataset, with the reason
    #: (``{"ser-fiq": "XQLFW was built by selecting images with SER-FIQ"}``): their result rows
    #: carry ``leakage`` and the tables mark them. A fact about how the dataset was made, so it is
    #: declared at registration (listed without building anything), not read from the files.
    leakage: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        default = self.default_fr_model
        if isinstance(default, (tuple, list)):
            if not default or not all(isinstance(n, str) and n for n in default):
                raise _Invalid(f"default_fr_model must be a name or a tuple of names, got {default!r}")
            object.__setattr__(self, "default_fr_model", tuple(default))
        elif default is not None and not isinstance(default, str):
            raise _Invalid(f"default_fr_model must be a name or a tuple of names, got {default!r}")
        if self.data_root_folder is not None:
            if not isinstance(self.data_root_folder, str) or not self.data_root_folder.strip():
                raise _Invalid(f"data_root_folder must be a folder name, got {self.data_root_folder!r}")
            if "root" not in self.options:
                raise _Invalid("data_root_folder needs a 'root' option to set")
        if not isinstance(self.leakage, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in self.leakage.items()
        ):
            raise _Invalid(f"leakage must map method names to reasons (strings), got {self.leakage!r}")
        object.__setattr__(self, "leakage", dict(self.leakage))

    @property
    def default_fr_models(self) -> tuple[str, ...]:
        """The default evaluation FR model(s), in order of preference."""
        default = self.default_fr_model
        return () if default is None else (default,) if isinstance(default, str) else default


@dataclass(frozen=True, kw_only=True)
class FormatSpec(ComponentSpec):
    """A report writer ``write(results, out_dir) -> list[Path]``."""

    kind: ClassVar[str] = "format"
    version: str = "1"


@dataclass(frozen=True, kw_only=True)
class TrainerSpec(ComponentSpec):
    """A training job ``train(*, options, device, output, progress, **inputs) -> Path``."""

    kind: ClassVar[str] = "trainer"
    #: Components the CLI resolves from the registry, builds and passes as keyword arguments:
    #: ``{"dataset": "synthetic-train"}`` takes ``dataset=`` (default synthetic-train; None:
    #: required unless an option replaces it), ``{"fr_model": None}`` takes ``fr_model=``;
    #: ``{"labels": None}`` takes ``labels=`` (a tuple of :class:`fiqabench.labels.Labels`, one per
    #: ``--labels``, checked by :func:`fiqabench.labels.check_joinable`) and ``dataset=`` (the tuple
    #: of the datasets they were computed on, each rebuilt from its provenance, in the same order).
    inputs: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.inputs) - {"dataset", "fr_model", "labels"}
        if unknown:
            raise _Invalid(f"inputs may name dataset, fr_model and labels, not {', '.join(sorted(unknown))}")


SPECS: dict[str, type[ComponentSpec]] = {
    cls.kind: cls for cls in (MethodSpec, FRModelSpec, DatasetSpec, FormatSpec, TrainerSpec)
}
_PROTOCOLS: dict[str, type] = {"method": FIQAMethod, "fr_model": FaceRecognitionModel, "dataset": Dataset}
_CORE_FIELDS = {"name", "target", "plugin", "distribution"}

#: Kept for code written against the first registry.
Entry = ComponentSpec


def _domain_names(value: Any, error: type[Exception], name: str = "") -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not all(isinstance(d, str) for d in value):
        where = f"method {name!r}: domains() returned" if name else "domains must be a tuple of names, got"
        raise error(f"{where} {value!r}")
    return tuple(value)


def _check_cost(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise _Invalid(f"cost_ms_per_image must be a positive number, got {value!r}")


def _protocol_members(protocol: type) -> list[str]:
    names: list[str] = []
    for klass in protocol.__mro__:
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        for name in list(getattr(klass, "__annotations__", {})) + [
            n for n, v in vars(klass).items() if callable(v) or isinstance(v, property)
        ]:
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


def fields_of(kind: str) -> list[str]:
    """The fields a plugin may pass to ``register`` for ``kind``."""
    return [f.name for f in dataclasses.fields(SPECS[kind]) if f.name not in _CORE_FIELDS]


class Registry:
    """All registered components, by kind and name."""

    def __init__(self, plugin_set: PluginSet) -> None:
        pm = plugin_set.pm
        self.plugin_set = plugin_set
        self._distributions = plugin_set.distributions
        self.failures = plugin_set.failures
        self._entries: dict[str, dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}
        for kind, (hook_name, _) in KINDS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                register = self._make_register(kind, impl.plugin_name)
                try:
                    impl.function(register=register)
                except (DuplicateComponentError, ConfigError, PluginLoadError):
                    raise
                except Exception as exc:
                    raise PluginLoadError(
                        f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                    ) from exc

    def _make_register(self, kind: str, plugin_name: str) -> Callable[..., None]:
        distribution = self._distributions.get(plugin_name)
        spec_type = SPECS[kind]
        allowed = fields_of(kind)

        def register(name: str, target: Any, **fields: Any) -> None:
            where = f"plugin {plugin_name!r}"
            if not isinstance(name, str) or not _NAME.match(name):
                raise PluginLoadError(
                    f"{where} registered {KINDS[kind][1]} name {name!r}: names are lowercase kebab-case"
                )
            unknown = sorted(set(fields) - set(allowed))
            if unknown:
                raise PluginLoadError(
                    f"{where} registered {name!r} with unknown field(s) {', '.join(unknown)};"
                    f" a {KINDS[kind][1]} takes {', '.join(allowed)}"
                )
            existing = self._entries[kind].get(name)
            if existing is not None:
                raise DuplicateComponentError(
                    f"{KINDS[kind][1]} {name!r} is registered twice: by plugin {existing.plugin!r}"
                    f" ({existing.distribution or 'local'}) and by plugin {plugin_name!r}"
                    f" ({distribution or 'local'}); disable one with FIQABENCH_DISABLE_PLUGINS"
                )
            try:
                spec = spec_type(name=name, target=target, plugin=plugin_name, distribution=distribution, **fields)
            except _Invalid as exc:
                raise PluginLoadError(f"{where} registered {KINDS[kind][1]} {name!r}: {exc}") from None
            self._entries[kind][name] = spec

        return register

    def get(self, kind: str, name: str) -> Any:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(KINDS[kind][1], name, self._entries[kind]) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> Iterator[Any]:
        for name in self.names(kind):
            yield self._entries[kind][name]

    # -- capabilities ----------------------------------------------------------------------
    def fr_refusal(self, method: MethodSpec, method_options: Mapping[str, Any] | None,
                   fr: FRModelSpec, fr_options: Mapping[str, Any] | None) -> str | None:
        """Why ``method`` cannot use ``fr`` inside itself (None: it can). One line, naming the
        registered FR models that would do."""
        need = method.fr_need(method_options)
        if need not in _NEED_TEXT:
            return None
        text, has = _NEED_TEXT[need]
        if has(fr.capabilities_for(fr_options)):
            return None
        suitable = [e.name for e in self.entries("fr_model") if _safe_has(has, e)]
        others = (
            f"{', '.join(suitable)} {'has' if len(suitable) == 1 else 'have'} {'it' if need == 'gradients' else 'one'}"
            if suitable else "no registered FR model has one"
        )
        return f"{method.name} needs an FR model with {text}; {others}, {fr.name} has none"

    def applicable_fr_models(self, method: MethodSpec) -> list[str]:
        """FR models (default options) the method can use inside itself."""
        if method.fr_need(None) == "none":
            return []
        return [e.name for e in self.entries("fr_model") if self.fr_refusal(method, None, e, None) is None]


def _safe_has(has: Callable[[FRCapabilities], bool], entry: FRModelSpec) -> bool:
    try:
        return bool(has(entry.capabilities_for(None)))
    except Exception:  # a capabilities function failing on defaults (missing weights): not suitable
        return False
