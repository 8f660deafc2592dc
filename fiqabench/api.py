"""The contracts between the core and its plugins.

Three kinds of component plug into fiqabench: face recognition (FR) models, FIQA methods and
datasets. Each is registered by a plugin (see :mod:`fiqabench.hookspecs`) with a lazy
``"module:attr"`` target; the target is a factory called as ``factory(options=..., device=...)``
and returns an object that satisfies the Protocol below.

Conventions (see ``DESIGN.md``):

- Images handed to plugins are aligned face crops: RGB, ``uint8``, shape ``(N, H, W, 3)``.
- An FR model converts them to its declared float *input space* with :meth:`preprocess`; methods
  that perturb images work in ``[0, 1]`` RGB float tensors and call :meth:`to_input_space`, so
  colour order, range and size conversions live in one tested place.
- Quality: higher is better. Methods that declare ``higher_is_better=False`` are flipped once, by
  the runner.
- Comparison scores are similarities (higher means the same subject).

This module imports neither torch nor numpy at run time, so listing components stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "Comparisons",
    "Dataset",
    "DatasetWithDetails",
    "DatasetWithFolds",
    "FaceRecognitionModel",
    "FIQAMethod",
    "FRCapabilities",
    "InputSpace",
    "Option",
    "SampleBatch",
    "SampleTable",
    "Templates",
    "FRNeed",
]

#: What a FIQA method needs from the FR model it uses inside itself.
#: ``none``: nothing (e.g. ``oracle``); ``embeddings``: black-box forward passes (DifFIQA);
#: ``gradients``: input gradients (FaceQAN); ``dropout``: a head with dropout run many times
#: (SER-FIQ); ``backbone``: the method ships its own network built on the FR backbone.
FRNeed = Literal["none", "embeddings", "gradients", "dropout", "backbone"]


@dataclass(frozen=True)
class Option:
    """One option of a component, as set by ``--method-option NAME:KEY=VALUE`` and friends.

    ``parse`` turns the command-line string into a value (``int``, ``float``, :func:`parse_bool`,
    ...). ``affects_result=False`` marks options that cannot change a score (``compile``,
    ``num_threads``): they are left out of cache keys.
    """

    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    affects_result: bool = True
    #: The value is a file path (weights): cache keys hold the file's content digest, so a
    #: retrained file at the same path is never mistaken for the old one.
    is_path: bool = False


def parse_bool(text: str | bool) -> bool:
    """Parse ``true/false/1/0/yes/no/on/off`` (any case); a bool is returned as it is."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class InputSpace:
    """The float input space of an FR model.

    ``x = (rgb01[channel_order] - mean) / std`` at ``size = (height, width)``, where ``rgb01`` is
    the image as float RGB in ``[0, 1]`` and ``mean``/``std`` are given in the model's channel
    order. InsightFace-style models: ``size=(112, 112)``, ``mean=std=(0.5,)*3`` (range [-1, 1]).
    """

    size: tuple[int, int]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class FRCapabilities:
    """What an FR model offers to FIQA methods that use it inside themselves."""

    #: ``forward`` is differentiable with respect to its input (FaceQAN).
    differentiable: bool = True
    #: ``head(features, dropout=True)`` applies a dropout layer (SER-FIQ).
    has_dropout: bool = False
    #: ``trunk``/``head`` split exists, so a method can run the trunk once and the head many times.
    has_trunk_head: bool = False
    #: ``forward`` returns the embedding before L2 normalisation (MagFace-style norms).
    unnormalised_embedding: bool = True


@runtime_checkable
class FaceRecognitionModel(Protocol):
    """An FR model: aligned crops in, embeddings out.

    ``forward`` maps float tensors already in :attr:`input_space` (``(N, 3, H, W)`` on
    :attr:`device`) to embeddings ``(N, D)``; it accepts unclamped values and keeps the autograd
    graph when the model is ``differentiable``. ``embed`` is the convenience path for uint8 crops.
    """

    name: str
    version: str
    domain: str
    input_space: InputSpace
    embedding_size: int
    capabilities: FRCapabilities
    #: A digest of the weights, recorded with the model. Cache keys see the weights through the
    #: options declared ``is_path=True`` (the file's sha256, computed before anything is built),
    #: so declare every weight-file option that way.
    weights_digest: str

    @property
    def device(self) -> torch.device: ...

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(N, H, W, 3)`` -> float tensor in the input space on :attr:`device`."""
        ...

    def to_input_space(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Float RGB ``(N, 3, h, w)``, nominally in [0, 1], -> input space (resized if needed)."""
        ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input-space tensor -> embeddings ``(N, D)`` (unnormalised if so declared)."""
        ...

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Input-space tensor -> features before the head (only with ``has_trunk_head``)."""
        ...

    def head(
        self, features: torch.Tensor, *, dropout: bool = False, seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Features -> embeddings; ``dropout=True`` samples the dropout layer(s).

        ``seeds`` (one integer per row) makes each row's masks a function of its seed alone (a
        counter-based hash, :func:`fiqabench.fr.seeded_dropout`): independent of the batch's
        composition, the device and torch's RNG. Without seeds, torch's RNG draws the masks.
        """
        ...

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB crops -> float32 embeddings ``(N, D)``, no gradients."""
        ...


@dataclass(frozen=True)
class SampleBatch:
    """What a FIQA method is given: images plus per-sample ids, metadata and seeds.

    ``seeds`` are derived by the runner from (run seed, method@version, dataset, sample id), so a
    stochastic method that seeds each sample from its own seed gives scores that do not depend on
    batch size, order or subsetting.
    """

    ids: tuple[str, ...]
    images: np.ndarray
    metadata: tuple[Mapping[str, Any], ...]
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@runtime_checkable
class FIQAMethod(Protocol):
    """A FIQA method: one quality score per image.

    ``score`` returns a float array of shape ``(N,)``. ``fr_model`` is the model named by the
    method's ``quality_fr_model`` option, or ``None`` for methods that need none. NaN marks a
    sample the method could not score (the runner's ``--on-failure`` decides what happens).
    """

    def score(self, batch: SampleBatch, *, fr_model: FaceRecognitionModel | None) -> np.ndarray: ...


@dataclass(frozen=True)
class SampleTable:
    """The images of a dataset, in a fixed order that indices refer to.

    ``metadata`` holds per-sample fields a method may read (the synthetic dataset records the
    degradation ``severity`` that the ``oracle`` uses).
    """

    ids: tuple[str, ...]
    subjects: tuple[str, ...]
    metadata: tuple[Mapping[str, Any], ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Templates:
    """Template structure of set-based protocols (IJB-C): each sample belongs to one template.

    ``sample_template[i]`` is the template index of sample ``i`` (``-1``: in no template);
    ``media_ids[i]`` groups the frames of one video; ``detector_scores[i]`` is the face detector's
    score used as an optional pooling weight.
    """

    ids: tuple[str, ...]
    sample_template: np.ndarray
    media_ids: np.ndarray
    detector_scores: np.ndarray | None = None
    #: How a template's quality is made from its images' qualities: ``min`` or ``mean``.
    quality_rule: Literal["min", "mean"] = "min"


@dataclass(frozen=True)
class Comparisons:
    """The comparisons of a protocol: index pairs with a mated flag.

    Indices refer to samples, or to templates when the dataset has :class:`Templates`.
    """

    a: np.ndarray
    b: np.ndarray
    mated: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


@runtime_checkable
class Dataset(Protocol):
    """A benchmark: samples, a comparison protocol and a way to read the aligned crops."""

    name: str
    version: str
    domain: str

    def samples(self) -> SampleTable: ...

    def comparisons(self) -> Comparisons: ...

    def templates(self) -> Templates | None: ...

    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB aligned crops ``(len(indices), H, W, 3)``."""
        ...

    def manifest_digest(self) -> str:
        """A digest of everything that defines the samples and protocol (for cache keys)."""
        ...


# Optional parts of a Dataset: the runner uses them when a dataset has them (checked with
# isinstance), so they are separate Protocols rather than members every dataset must define.
@runtime_checkable
class DatasetWithFolds(Protocol):
    """A pair protocol with verification folds (LFW's 10 folds): the results' FR sanity figures
    then hold k-fold verification accuracy instead of TAR at FAR."""

    def folds(self) -> np.ndarray | None:
        """The fold index of each comparison (any integers), or None: no folds."""
        ...


@runtime_checkable
class DatasetWithDetails(Protocol):
    """A dataset that says how it was read, recorded in ``results.json`` under
    ``components.datasets[name].details`` (alignment, where subjects came from, detection
    failures...)."""

    def details(self) -> Mapping[str, Any]:
        """Plain JSON-able values (strings, numbers, lists, dicts), known once the dataset is built."""
        ...


@dataclass(frozen=True)
class RuntimeInfo:
    """Where a component ran; recorded with every timed measurement."""

    device: str
    host: str
    batch_size: int
    extra: Mapping[str, Any] = field(default_factory=dict)
