"""The conformance helpers catch the mistakes they exist for."""

from __future__ import annotations

import numpy as np
import pytest

from fiqabench.testing import ConformanceError, check_dataset, check_method, make_batch
from fiqabench_plugins.brackets.methods import RandomQuality

from .fixture_plugins.toy import ToyDataset


class BatchSeeded:
    """Seeds one generator per batch: scores change with batch size and order."""

    def score(self, batch, *, fr_model):
        return np.random.default_rng(int(batch.seeds[0])).random(len(batch))


class Mutating:
    def score(self, batch, *, fr_model):
        batch.images[:] = 0
        return np.zeros(len(batch))


class WrongShape:
    def score(self, batch, *, fr_model):
        return np.zeros((len(batch), 1))


def test_a_conforming_method_passes() -> None:
    scores = check_method(RandomQuality(options={}, device="cpu"), make_batch(9))
    assert scores.shape == (9,)


@pytest.mark.parametrize(
    ("method", "message"),
    [(BatchSeeded(), "order"), (Mutating(), "modified the input"), (WrongShape(), "shape")],
)
def test_broken_methods_are_caught(method: object, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_method(method, make_batch(8))


def test_dataset_check() -> None:
    check_dataset(ToyDataset(options={}, device="cpu"))

    class Lying(ToyDataset):
        def comparisons(self):
            c = super().comparisons()
            return type(c)(a=c.a, b=c.b, mated=~c.mated)

    with pytest.raises(ConformanceError, match="mated flags"):
        check_dataset(Lying(options={}, device="cpu"))
