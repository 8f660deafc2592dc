"""A tiny numpy-only world for engine tests: dataset ``toy``, FR model ``toy-fr``, test methods.

20 identities x 10 images of 16x16 px: each image is its identity's pattern blended with noise
by a recorded severity, so FIQA means something and runs take milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import numpy as np

from fiqabench import Comparisons, FRCapabilities, Option, SampleTable, hookimpl

N_IDS, PER_ID, SIZE = 20, 10, 16


class ToyDataset:
    name, version, domain = "toy", "1", "toy"

    def __init__(self, *, options, device):
        self.identities = int(options.get("identities", N_IDS))
        rng = np.random.default_rng(7)
        patterns = rng.integers(0, 256, (self.identities, SIZE, SIZE, 3))
        n = self.identities * PER_ID
        self.severity = np.where(rng.random(n) < 0.5, rng.random(n), 0.0)
        noise = rng.integers(0, 256, (n, SIZE, SIZE, 3))
        subject = np.repeat(np.arange(self.identities), PER_ID)
        s = self.severity[:, None, None, None]
        self.images = (patterns[subject] * (1 - s) + noise * s).astype(np.uint8)
        self.subject = subject
        self.reads = 0

    def samples(self):
        ids = tuple(f"id{self.subject[i]:02d}/img{i % PER_ID}" for i in range(len(self.subject)))
        meta = tuple({"severity": float(v)} for v in self.severity)
        return SampleTable(ids=ids, subjects=tuple(str(s) for s in self.subject), metadata=meta)

    def comparisons(self):
        n = len(self.subject)
        a, b = np.triu_indices(n, k=1)
        return Comparisons(a=a, b=b, mated=self.subject[a] == self.subject[b])

    def templates(self):
        return None

    def read_images(self, indices):
        self.reads += 1
        return self.images[np.asarray(indices)]

    def manifest_digest(self):
        return hashlib.sha256(self.images.tobytes()).hexdigest()[:16] + f"-{self.identities}"


def ToyFR(*, options, device, name="toy-fr", domain="toy", dropout=None):
    """A random projection of the pixels, as a TorchFRModel (so methods can perturb its input);
    ``dropout`` puts a dropout layer in its head (SER-FIQ-style test methods)."""
    import torch
    from torch import nn

    from fiqabench import InputSpace
    from fiqabench.fr import TorchFRModel

    rng = np.random.default_rng(int(options.get("projection_seed", 3)))
    projection = nn.Linear(SIZE * SIZE * 3, 32, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.from_numpy(rng.normal(size=(32, SIZE * SIZE * 3))).float())
    head = nn.Sequential(nn.Dropout(dropout), nn.Identity()) if dropout else nn.Identity()
    return TorchFRModel(
        name=name, version="1", domain=domain, input_space=InputSpace(size=(SIZE, SIZE)), embedding_size=32,
        trunk=nn.Sequential(nn.Flatten(), projection), head=head, weights_digest="toy", device=device,
    )


def ToyFR112(*, options, device):
    return ToyFR(options=options, device=device, name="toy-fr-112", domain="aligned-112-face")


def ToyDropoutFR(*, options, device):
    return ToyFR(options=options, device=device, name="toy-dropout-fr", dropout=0.5)


TOY_CAPS = FRCapabilities(differentiable=True, has_dropout=False, has_trunk_head=True)


class ToyNorm:
    """Quality = embedding norm of the quality FR model (exercises the quality_fr_model plumbing)."""

    def __init__(self, *, options, device):
        pass

    def score(self, batch, *, fr_model):
        return np.linalg.norm(fr_model.embed(batch.images), axis=1)


class ToyNaN:
    """Severity-based quality with NaN for every 7th sample."""

    def __init__(self, *, options, device):
        pass

    def score(self, batch, *, fr_model):
        q = -np.array([m["severity"] for m in batch.metadata])
        q[[i for i, sid in enumerate(batch.ids) if int(sid.rsplit("img", 1)[1]) == 3]] = np.nan
        return q


class ToyKill:
    """Like the oracle, but SIGKILLs its own process at the batch given by env var, once."""

    calls = 0

    def __init__(self, *, options, device):
        pass

    def score(self, batch, *, fr_model):
        ToyKill.calls += 1
        marker = os.environ.get("FIQABENCH_TEST_KILL_MARKER")
        if marker and not Path(marker).exists() and ToyKill.calls == int(os.environ["FIQABENCH_TEST_KILL_AT"]):
            Path(marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return -np.array([m["severity"] for m in batch.metadata])


@hookimpl
def fiqabench_register_datasets(register):
    register("toy", ToyDataset, version="1", summary="tiny test world", domain="toy",
             default_fr_model="toy-fr", options={"identities": Option(N_IDS, "identities", parse=int)})
    register("toy-disk", "fiqabench_local_plugin_toy:ToyDisk", version="1", summary="toy world on disk",
             domain="toy", default_fr_model="toy-fr", options={"root": Option(None, "folder of <i>.npy images")})


@hookimpl
def fiqabench_register_fr_models(register):
    register("toy-fr", ToyFR, version="1", summary="random projection", domain="toy", capabilities=TOY_CAPS,
             options={"projection_seed": Option(3, "projection seed", parse=int)})
    register("toy-dropout-fr", ToyDropoutFR, version="1", summary="random projection, dropout head",
             domain="toy", capabilities=FRCapabilities(differentiable=True, has_dropout=True, has_trunk_head=True))
    register("toy-weights", "fiqabench_local_plugin_toy:ToyWeightsFR", version="1", summary="needs weights",
             domain="toy", options={"weights": Option("/nonexistent/toy.safetensors", "weight file", is_path=True)})
    register("toy-fr-112", ToyFR112, version="1", summary="declares the aligned-112 domain",
             domain="aligned-112-face", capabilities=TOY_CAPS)


@hookimpl
def fiqabench_register_fiqa_methods(register):
    register("toy-norm", ToyNorm, version="1", summary="embedding norm", reference="test",
             needs_fr_model="embeddings", domains=("toy",))
    register("toy-nan", ToyNaN, version="1", summary="NaN for some", reference="test", domains=("toy",))
    register("toy-kill", ToyKill, version="1", summary="kills itself", reference="test", domains=("toy",))
    register("toy-dropout", ToyNorm, version="1", summary="declares it needs dropout", reference="test",
             needs_fr_model="dropout", domains=("toy",))


class ToyDisk(ToyDataset):
    """The toy world read from ``root/<i>.npy`` files (for missing-root and unreadable-file errors)."""

    name = "toy-disk"

    def __init__(self, *, options, device):
        from fiqabench.errors import MissingArtifactError

        super().__init__(options={}, device=device)
        self.root = Path(options["root"] or "")
        if not options["root"] or not self.root.is_dir():
            raise MissingArtifactError(
                f"dataset 'toy-disk' needs its files: --dataset-option toy-disk:root=DIR (got {options['root']!r})"
            )

    def read_images(self, indices):
        from fiqabench.errors import InputFormatError

        out = []
        for i in indices:
            path = self.root / f"{i}.npy"
            try:
                out.append(np.load(path, allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise InputFormatError(path, None, None, f"unreadable image: {exc}") from exc
        return np.stack(out)


def ToyWeightsFR(*, options, device):
    from fiqabench.errors import MissingArtifactError

    if not Path(options["weights"]).is_file():
        raise MissingArtifactError(
            f"FR model 'toy-weights' needs its weight file {options['weights']}: "
            "pass --fr-option toy-weights:weights=PATH"
        )
    return ToyFR(options={}, device=device, name="toy-weights")
