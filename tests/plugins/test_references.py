"""The reference methods ``sharpness`` and ``embedding-norm`` (brackets plugin) and the
registration of the four baselines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fiqabench.api import FRCapabilities
from fiqabench.errors import ConfigError
from fiqabench.testing import check_method, make_batch
from fiqabench_plugins.brackets.methods import EmbeddingNorm, Sharpness, laplacian_variance


def test_laplacian_variance_on_hand_computed_values() -> None:
    flat = np.full((1, 5, 5, 3), 77, np.uint8)
    assert laplacian_variance(flat)[0] == 0.0
    stripes = np.zeros((1, 4, 4, 3), np.uint8)
    stripes[0, :, 1::2] = 100  # columns 0, 100, 0, 100: Laplacian 200, -200, 200, -200 (reflect-101)
    assert laplacian_variance(stripes)[0] == pytest.approx(200.0**2)
    grey = np.zeros((1, 3, 3, 3), np.uint8)
    grey[0, 1, 1] = (100, 0, 0)  # luma 29.9 at the centre only
    assert laplacian_variance(grey)[0] == pytest.approx(335.8025 * (29.9 / 10) ** 2, rel=1e-6)


def test_sharpness_drops_with_blur_and_conforms() -> None:
    from fiqabench_plugins.synthetic import degrade as deg
    from fiqabench_plugins.synthetic._detmath import rng_for

    batch = make_batch(6)
    scores = check_method(Sharpness(options={}, device="cpu"), batch)
    blurred = np.stack([deg.degrade(img, "blur", 0.8, rng_for(0, 1)) for img in batch.images])
    assert (laplacian_variance(blurred) < scores).all()


def test_embedding_norm_is_the_norm_of_the_embedding() -> None:
    from fiqabench_plugins.synthetic.model import build

    fr = build(options={}, device="cpu")
    batch = make_batch(5)
    scores = check_method(EmbeddingNorm(options={}, device="cpu"), batch, fr_model=fr)
    assert np.allclose(scores, np.linalg.norm(fr.embed(batch.images).astype(np.float64), axis=1))

    class Normalised:
        name = "unit"
        capabilities = FRCapabilities(unnormalised_embedding=False)

    with pytest.raises(ConfigError, match="normalised embeddings"):
        EmbeddingNorm(options={}, device="cpu").score(batch, fr_model=Normalised())  # type: ignore[arg-type]


def test_baselines_declare_what_they_need_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from fiqabench.plugins import get_plugin_manager\n"
        "from fiqabench.registry import Registry\n"
        "reg = Registry(get_plugin_manager(entry_points=False))\n"
        "for n in ('cr-fiqa', 'magface', 'ser-fiq', 'faceqan', 'sharpness', 'embedding-norm'):\n"
        "    e = reg.get('method', n)\n"
        "    print(n, e.fr_need(None), e.cost_ms_per_image > 0)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:7] == [
        "cr-fiqa none True", "magface none True", "ser-fiq dropout True", "faceqan gradients True",
        "sharpness none True", "embedding-norm embeddings True", "False",
    ]
    assert torch.__version__  # torch is importable here, just not imported by listing
