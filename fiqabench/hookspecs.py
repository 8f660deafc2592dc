"""The hooks a fiqabench plugin implements.

Every hook receives a ``register`` callback owned by the core and returns nothing. A plugin
calls ``register`` once per component it provides, with a lazy ``"module:attr"`` target so that
listing components never imports torch or loads weights. The registry records which plugin and
distribution registered each name; a name registered twice is an error naming both plugins.

A plugin is a module (or any object) with functions decorated by :data:`fiqabench.hookimpl`::

    from fiqabench import hookimpl

    @hookimpl
    def fiqabench_register_fiqa_methods(register):
        register("my-method", "my_package.method:MyMethod", version="1.0",
                 summary="Brightness as quality", needs_fr_model="none")

Third-party packages expose such a module through the entry-point group ``fiqabench``; a single
file can be loaded with ``fiqabench --plugins-dir DIR``.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("fiqabench")


class RegisterCallback(Protocol):
    """The ``register`` argument of every registration hook: ``fields`` are those of the kind's
    spec in :mod:`fiqabench.registry` (checked when registered)."""

    def __call__(self, name: str, target: Any, **fields: Any) -> None: ...


@hookspec
def fiqabench_register_fr_models(register: RegisterCallback) -> None:
    """Register face recognition models.

    Called once per process, when the registry is first built. Each call
    ``register(name, target, *, version, summary, domain, capabilities=None, options={},
    reference="", display_name=None, availability=None, cost_ms_per_image=None)`` adds one model
    (:class:`fiqabench.registry.FRModelSpec`). ``capabilities`` (an
    :class:`fiqabench.api.FRCapabilities`, or a function of the resolved options returning one)
    says what methods may ask of the model: input gradients, a dropout layer, a trunk/head split;
    the plan refuses a method whose need is not met, and the built model must report the same. ``target`` is a ``"module:attr"``
    string (or a callable) for a factory ``factory(*, options, device)`` that returns a
    :class:`fiqabench.api.FaceRecognitionModel`. ``domain`` names the images the model was made
    for (``"aligned-112-face"``, ``"synthetic"``); a dataset of another domain is refused unless
    the user overrides it. ``options`` maps option names to :class:`fiqabench.api.Option`
    (e.g. ``weights``). ``availability(options) -> str | None`` is a light check (no torch)
    returning why the model cannot be built, e.g. a missing weight file.

    Example::

        register("my-arcface", "my_lab.models:build_arcface",
                 version="1", summary="ArcFace iResNet100 from our lab's checkpoint",
                 domain="aligned-112-face",
                 capabilities=FRCapabilities(differentiable=True, has_trunk_head=True),
                 options={"weights": Option(None, "path to the .pth file", is_path=True)})
    """


@hookspec
def fiqabench_register_fiqa_methods(register: RegisterCallback) -> None:
    """Register FIQA methods.

    Called once per process, when the registry is first built. Each call
    ``register(name, target, *, version, summary, reference, needs_fr_model="none",
    higher_is_better=True, domains=None, default_quality_fr_model=None, options={},
    display_name=None, availability=None, cost_ms_per_image=None)`` adds one method
    (:class:`fiqabench.registry.MethodSpec`); ``needs_fr_model`` may be a function of the resolved
    options, and ``cost_ms_per_image`` (a rough CPU figure) sizes shards until a runtime is recorded. ``target`` builds a
    :class:`fiqabench.api.FIQAMethod` via ``factory(*, options, device)``. ``reference`` is the
    paper (with section or equation). ``needs_fr_model`` is one of :data:`fiqabench.api.FRNeed`;
    every method that needs one gets a ``quality_fr_model`` option whose default is
    ``default_quality_fr_model`` or, when that is ``None``, the dataset's default FR model.
    ``higher_is_better=False`` makes the runner negate the scores. ``domains`` restricts the
    method to datasets of those domains (``oracle`` needs synthetic severities); it may be a
    function of the resolved options (weights trained on one domain), and ``domain_hint`` says
    what to change to use the method elsewhere (named in the refusal; ``--allow-domain-mismatch``
    overrides it).

    Example::

        register("diffiqa", "fiqabench_plugins.diffiqa.method:DifFIQA", version="1.0",
                 summary="Diffusion-based FIQA", reference="Babnik et al., IJCB 2023",
                 needs_fr_model="embeddings", display_name="DifFIQA")
    """


@hookspec
def fiqabench_register_datasets(register: RegisterCallback) -> None:
    """Register datasets (benchmarks with a comparison protocol).

    Called once per process, when the registry is first built. Each call
    ``register(name, target, *, version, summary, domain, default_fr_model=None, options={},
    reference="", display_name=None, availability=None, data_root_folder=None)`` adds one dataset;
    ``target`` builds a :class:`fiqabench.api.Dataset` via ``factory(*, options, device)``. Real
    datasets take a ``root`` option and raise :class:`fiqabench.errors.MissingArtifactError` when
    it is missing; ``data_root_folder`` is the dataset's usual folder name under ``--data-root``
    (used when ``root`` is not given). ``default_fr_model`` may be a tuple: the first of them that
    is available evaluates the dataset when ``--fr-models`` is not given.

    Example::

        register("lfw", "fiqabench_plugins.datasets.lfw:build", version="1",
                 summary="LFW 6,000-pair protocol", domain="aligned-112-face",
                 options={"root": Option(None, "folder holding lfw/ and pairs.txt")})
    """


@hookspec
def fiqabench_register_report_writers(register: RegisterCallback) -> None:
    """Register output formats for ``fiqabench report`` and the end of ``fiqabench run``.

    Called once per process, when the registry is first built. Each call
    ``register(name, target, *, summary, version="1")`` adds one format; ``target`` is a
    function ``writer(results: fiqabench.results.Results, out_dir: pathlib.Path) ->
    list[pathlib.Path]`` that reads the parsed, checked ``results.json`` alone and returns the
    files it wrote.

    Example::

        register("latex", "fiqabench.report.latex:write", summary="paper-style LaTeX tables")
    """


@hookspec
def fiqabench_register_trainers(register: RegisterCallback) -> None:
    """Register training jobs for ``fiqabench train NAME``.

    Called once per process, when the registry is first built. Each call
    ``register(name, target, *, version, summary, options={}, inputs={})`` adds one job; ``target``
    is a function ``train(*, options, device, output, progress, **inputs) -> pathlib.Path`` that
    trains and writes a weight file (resuming from checkpoints next to ``output``) and returns its
    path. ``inputs`` maps ``"dataset"``/``"fr_model"`` to a default name (None: none by default):
    the CLI resolves ``--dataset NAME``/``--fr-model NAME`` with their options from the registry,
    builds them, and passes them as ``dataset=``/``fr_model=``. ``"labels"`` takes
    ``--labels LABELS`` (repeatable) and passes ``labels=`` (a tuple of
    :class:`fiqabench.labels.Labels`) and ``dataset=`` (the tuple of their datasets).

    Example::

        register("diffiqa-ddpm", "fiqabench_plugins.diffiqa.train:train", version="1",
                 summary="extended DDPM training of DifFIQA",
                 inputs={"dataset": "synthetic-train"})
    """
