"""Comparison scores: cosine similarity of sample pairs, IJB-C template pooling and template scores.

Three pieces, all pure numpy and bounded in memory:

- :func:`cosine_scores` scores sample pairs ``(a[i], b[i])`` in chunks of pairs, accumulating
  in float64, so a protocol never needs an ``(n_pairs, D)`` gather in memory.
- :func:`pool_templates` builds IJB-C template features the way the insightface evaluation does
  (``recognition/arcface_torch/eval_ijbc.py``; ``research/ecosystem.md`` section 4.8), with its
  three switches recorded in a :class:`PoolingRecord` for the results file.
- :func:`template_pair_scores` scores millions of template pairs with float32 GEMMs: each pair is
  put in canonical order ``(min, max)``, the pairs are grouped by blocks of their first template,
  and each block is multiplied only with the templates its pairs need. Because scores are
  symmetric, the blocks together cover at most the upper triangle of the full score matrix, about
  half of what a row-blocked GEMM of the whole matrix computes.

Bad input (NaN or inf features, indices out of range, mismatched lengths, zero-norm features that
a comparison uses) raises :class:`~fiqabench.errors.MetricInputError` naming the rows involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fiqabench.errors import MetricInputError

__all__ = ["PoolingRecord", "cosine_scores", "pool_templates", "template_pair_scores"]

#: Pairs per chunk in :func:`cosine_scores`: two float64 gathers of 4,096 x 512 are 32 MiB.
DEFAULT_PAIR_BLOCK = 4096
#: Templates per block in :func:`template_pair_scores`: with 23,124 templates the block's score
#: matrix is at most 2,048 x 23,124 float32 = 181 MiB.
DEFAULT_TEMPLATE_BLOCK = 2048
# Rows per chunk when a whole matrix is scanned (norms, normalisation, pooling): 8,192 x 512
# float64 is 32 MiB, large enough that per-chunk overhead vanishes.
_ROW_CHUNK = 8192
# Pairs per chunk when index arrays are scanned: keeps the int64 temporaries at 8 MiB.
_PAIR_CHUNK = 1 << 20
# A GEMM operand is a view of its whole row range when at most 1/32 of the range is unused.
_MAX_HOLE_FRACTION = 32
# How many offending rows or positions an error message lists.
_SHOW = 5


@dataclass(frozen=True)
class PoolingRecord:
    """How template features were pooled; stored with results so scores can be reproduced.

    The three switches are insightface's ``use_flip_test``, ``use_norm_score`` and
    ``use_detector_score`` (``eval_ijbc.py``; its defaults are all ``True``). ``norm_score=True``
    means the image feature keeps its raw norm, which then acts as an implicit quality weight.

    >>> PoolingRecord(flip=True, norm_score=True, detector_score=False).as_dict()
    {'flip': True, 'norm_score': True, 'detector_score': False, 'rule': 'insightface-ijbc'}
    """

    flip: bool
    norm_score: bool
    detector_score: bool
    rule: str = "insightface-ijbc"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the record."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_matrix(name: str, values: object) -> np.ndarray:
    # No dtype conversion here: embeddings can be large, and every consumer below converts
    # chunk by chunk.
    array = np.asarray(values)
    if array.ndim != 2:
        raise MetricInputError(f"{name}: expected a 2-D array (n, D), got shape {array.shape}")
    if array.dtype.kind != "f":
        raise MetricInputError(f"{name}: expected floating-point features, got dtype {array.dtype}")
    if array.shape[1] == 0:
        raise MetricInputError(f"{name}: features have zero dimensions")
    return array


def _as_index(name: str, values: object, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D index array, got shape {array.shape}")
    if array.size == 0:
        # np.asarray([]) is float64; an empty protocol is still a valid protocol.
        return array.astype(np.intp)
    if array.dtype.kind not in "iu":
        raise MetricInputError(f"{name}: expected integer indices, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.dtype.itemsize >= np.dtype(np.intp).itemsize:
        # uint64 mixed with a signed index promotes to float64 in numpy; intp holds any valid index.
        array = array.astype(np.intp)
    # Negative indices are refused rather than wrapped around as numpy would.
    if array.min() < 0 or array.max() >= n:
        where = np.flatnonzero((array < 0) | (array >= n))
        shown = ", ".join(f"{name}[{i}] = {array[i]}" for i in where[:_SHOW])
        raise MetricInputError(
            f"{name}: {where.size} index(es) out of range [0, {n}): {shown}"
            f"{' ...' if where.size > _SHOW else ''}"
        )
    return array


def _check_same_length(names: str, *arrays: np.ndarray) -> None:
    sizes = [len(a) for a in arrays]
    if len(set(sizes)) > 1:
        raise MetricInputError(f"{names} differ in length: {' vs '.join(map(str, sizes))}")


def _row_norms(matrix: np.ndarray) -> np.ndarray:
    """L2 norm of every row in float64, chunk by chunk (NaN or inf rows give NaN or inf)."""
    norms = np.empty(matrix.shape[0], dtype=np.float64)
    for start in range(0, matrix.shape[0], _ROW_CHUNK):
        rows = matrix[start : start + _ROW_CHUNK].astype(np.float64)
        norms[start : start + _ROW_CHUNK] = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return norms


def _rows_list(rows: np.ndarray) -> str:
    return ", ".join(map(str, rows[:_SHOW].tolist())) + (" ..." if rows.size > _SHOW else "")


def _check_used_rows(name: str, norms: np.ndarray, indices: Sequence[np.ndarray]) -> None:
    """Refuse non-finite or zero-norm rows, but only those some comparison uses.

    A sample that failed embedding but takes part in no comparison must not stop the run.
    """
    bad = ~np.isfinite(norms) | (norms == 0.0)
    if not bad.any():
        return
    used = np.zeros(norms.size, dtype=bool)
    for index in indices:
        used[index] = True
    nonfinite = np.flatnonzero(~np.isfinite(norms) & used)
    if nonfinite.size:
        raise MetricInputError(
            f"{name}: {nonfinite.size} row(s) used by comparisons contain NaN or inf: rows "
            f"{_rows_list(nonfinite)}; drop those comparisons or fix the embeddings"
        )
    zero = np.flatnonzero((norms == 0.0) & used)
    if zero.size:
        raise MetricInputError(
            f"{name}: {zero.size} row(s) used by comparisons have zero norm, so their cosine "
            f"similarity is undefined: rows {_rows_list(zero)}; drop those comparisons"
        )


# --------------------------------------------------------------------------------------------
# Sample pairs
# --------------------------------------------------------------------------------------------


def cosine_scores(
    embeddings: object, a: object, b: object, *, block: int = DEFAULT_PAIR_BLOCK
) -> np.ndarray:
    """Cosine similarity of ``embeddings[a[i]]`` and ``embeddings[b[i]]`` for every pair ``i``.

    Exact up to float64 rounding: rows are converted to float64 before the products are summed,
    and each dot product is divided by the two float64 row norms. Pairs are processed ``block``
    at a time, so the extra memory is about ``2 * block * D * 8`` bytes plus the ``(n,)`` norms
    and the ``(n_pairs,)`` float64 result. Embeddings need not be normalised. Only rows that some
    pair uses are checked for NaN, inf and zero norm.

    Hand example: ``(1, 0)`` vs ``(0, 2)`` is orthogonal; ``(1, 0)`` vs ``(3, 4)`` gives
    ``3 / 5``; ``(0, 2)`` vs ``(3, 4)`` gives ``8 / (2 * 5)``.

    >>> cosine_scores([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], [0, 0, 1], [1, 2, 2]).tolist()
    [0.0, 0.6, 0.8]
    >>> cosine_scores([[1.0, 0.0], [0.0, 0.0]], [0], [1])
    Traceback (most recent call last):
    ...
    fiqabench.errors.MetricInputError: embeddings: 1 row(s) used by comparisons have zero norm, \
so their cosine similarity is undefined: rows 1; drop those comparisons
    """
    matrix = _as_matrix("embeddings", embeddings)
    n = matrix.shape[0]
    ia = _as_index("a", a, n)
    ib = _as_index("b", b, n)
    _check_same_length("a and b", ia, ib)
    block = int(block)
    if block < 1:
        raise MetricInputError(f"block must be a positive number of pairs, got {block}")
    out = np.empty(ia.size, dtype=np.float64)
    if ia.size == 0:
        return out
    norms = _row_norms(matrix)
    _check_used_rows("embeddings", norms, (ia, ib))
    for start in range(0, ia.size, block):
        pa = ia[start : start + block]
        pb = ib[start : start + block]
        xa = matrix[pa].astype(np.float64, copy=False)
        xb = matrix[pb].astype(np.float64, copy=False)
        out[start : start + block] = np.einsum("ij,ij->i", xa, xb) / (norms[pa] * norms[pb])
    return out


# --------------------------------------------------------------------------------------------
# IJB-C template pooling
# --------------------------------------------------------------------------------------------


def _as_vector(name: str, values: object, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size != n:
        raise MetricInputError(f"{name}: expected shape ({n},) (one value per sample), got {array.shape}")
    return array


def pool_templates(
    embeddings: object,
    sample_template: object,
    media_ids: object,
    *,
    flip_embeddings: object | None = None,
    detector_scores: object | None = None,
    norm_score: bool = True,
    detector_score: bool = True,
    n_templates: int | None = None,
) -> tuple[np.ndarray, PoolingRecord]:
    """IJB-C template features as in insightface's evaluation, vectorised.

    For every sample ``i`` with ``sample_template[i] >= 0``:

    1. ``f_i = embeddings[i] + flip_embeddings[i]`` (no flip term when ``flip_embeddings`` is None);
    2. with ``norm_score=False``, ``f_i`` is L2-normalised; with ``norm_score=True`` (insightface's
       default) its raw norm is kept and acts as a quality weight;
    3. with ``detector_score=True``, ``f_i`` is multiplied by ``detector_scores[i]``;
    4. within a template, samples with the same media id (frames of one video) are averaged, and
       a media with one image is kept as it is;
    5. the template feature is the sum over its medias, L2-normalised.

    ``sample_template[i]`` is a template index (``-1``: the sample is in no template), as in
    :class:`fiqabench.api.Templates`; media ids are grouped within each template, so the same
    media id in two templates makes two medias. ``n_templates`` defaults to
    ``max(sample_template) + 1``; a template with no samples, or whose pooled feature is zero, is
    an error. Sums are accumulated in float64 over chunks of whole templates (bounded memory), and
    the result is float32 ``(n_templates, D)``, together with the :class:`PoolingRecord` of the
    three switches. ``detector_score=True`` without ``detector_scores`` is an error rather than a
    silent no-op, so the record always says what was done.

    Hand example: template 0 holds sample 0 (media 7) and samples 1, 2 (media 9, a video); template
    1 holds sample 3. Raw norms, no detector weights: media 9 averages ``(0, 1)`` and ``(0, 3)``
    to ``(0, 2)``; the template sum ``(1, 2)`` normalises to ``(1, 2) / sqrt(5)``.

    >>> emb = [[1.0, 0.0], [0.0, 1.0], [0.0, 3.0], [3.0, 4.0]]
    >>> feats, record = pool_templates(emb, [0, 0, 0, 1], [7, 9, 9, 5], detector_score=False)
    >>> feats.astype(float).round(4).tolist(), record.as_dict()["norm_score"]
    ([[0.4472, 0.8944], [0.6, 0.8]], True)

    With ``norm_score=False`` every image is unit length first: media 9 averages ``(0, 1)`` twice,
    so template 0 is ``(1, 1) / sqrt(2)``. Detector scores then weight the images: with scores
    ``1, 3, 3`` template 0 sums ``(1, 0)`` and ``(0, 3)``, giving ``(1, 3) / sqrt(10)``.

    >>> pool_templates(emb, [0, 0, 0, 1], [7, 9, 9, 5], norm_score=False,
    ...                detector_score=False)[0][0].astype(float).round(4).tolist()
    [0.7071, 0.7071]
    >>> pool_templates(emb, [0, 0, 0, 1], [7, 9, 9, 5], norm_score=False,
    ...                detector_scores=[1.0, 3.0, 3.0, 1.0])[0][0].astype(float).round(4).tolist()
    [0.3162, 0.9487]
    """
    matrix = _as_matrix("embeddings", embeddings)
    n, dim = matrix.shape
    templates = _as_vector("sample_template", sample_template, n)
    if n and templates.dtype.kind not in "iu":
        raise MetricInputError(f"sample_template: expected integer template indices, got dtype {templates.dtype}")
    templates = templates.astype(np.intp, copy=False)  # bincount refuses uint64
    media = _as_vector("media_ids", media_ids, n)
    if media.dtype.kind not in "iu":
        # Any hashable ids (strings) become integer codes; grouping only needs equality.
        media = np.unique(media, return_inverse=True)[1].reshape(-1)

    flip: np.ndarray | None = None
    if flip_embeddings is not None:
        flip = _as_matrix("flip_embeddings", flip_embeddings)
        if flip.shape != matrix.shape:
            raise MetricInputError(
                f"flip_embeddings: shape {flip.shape} differs from embeddings {matrix.shape}"
            )
    weights: np.ndarray | None = None
    if detector_score:
        if detector_scores is None:
            raise MetricInputError(
                "detector_score=True needs detector_scores; pass detector_score=False for a "
                "dataset without detector scores"
            )
        weights = _as_vector("detector_scores", detector_scores, n).astype(np.float64)
        nonfinite = np.flatnonzero(~np.isfinite(weights) & (templates >= 0))
        if nonfinite.size:
            raise MetricInputError(f"detector_scores: NaN or inf for samples {_rows_list(nonfinite)}")

    if n and templates.min() < -1:
        where = np.flatnonzero(templates < -1)
        raise MetricInputError(
            f"sample_template: negative template index other than -1 at samples {_rows_list(where)}"
        )
    present = int(templates.max()) + 1 if n else 0
    if n_templates is None:
        n_templates = present
    n_templates = int(n_templates)
    if present > n_templates:
        raise MetricInputError(
            f"sample_template: template index {present - 1} out of range for n_templates={n_templates}"
        )

    # Sort the samples by (template, media); lexsort is stable, so ties keep sample order.
    members = np.flatnonzero(templates >= 0)
    order = members[np.lexsort((media[members], templates[members]))]
    sorted_template = templates[order]
    sorted_media = media[order]
    new_template = np.ones(order.size, dtype=bool)
    new_template[1:] = sorted_template[1:] != sorted_template[:-1]
    new_media = new_template.copy()
    new_media[1:] |= sorted_media[1:] != sorted_media[:-1]
    # Averaging within a media is a weighted sum: every frame of a media with c frames gets 1/c.
    media_of_sample = np.cumsum(new_media) - 1
    inverse_count = 1.0 / np.bincount(media_of_sample)[media_of_sample]
    template_starts = np.flatnonzero(new_template)

    counts = np.bincount(sorted_template, minlength=n_templates) if order.size else np.zeros(n_templates, np.int64)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise MetricInputError(
            f"{empty.size} template(s) have no samples: templates {_rows_list(empty)}; every "
            "template needs at least one embedded sample"
        )

    pooled = np.zeros((n_templates, dim), dtype=np.float64)
    # Chunks end at template starts, so each template is summed within one chunk.
    chunk_start = 0
    while chunk_start < order.size:
        next_start = int(np.searchsorted(template_starts, chunk_start + _ROW_CHUNK))
        chunk_end = int(template_starts[next_start]) if next_start < template_starts.size else order.size
        rows = order[chunk_start:chunk_end]
        feats = matrix[rows].astype(np.float64)
        if flip is not None:
            feats += flip[rows]
        nonfinite = ~np.isfinite(feats).all(axis=1)
        if nonfinite.any():
            which = "embeddings or flip_embeddings" if flip is not None else "embeddings"
            raise MetricInputError(f"{which}: NaN or inf in samples {_rows_list(np.sort(rows[nonfinite]))}")
        if not norm_score:
            norms = np.sqrt(np.einsum("ij,ij->i", feats, feats))
            if (norms == 0.0).any():
                raise MetricInputError(
                    f"zero-norm image feature(s) in samples {_rows_list(np.sort(rows[norms == 0.0]))}: "
                    "they cannot be L2-normalised (norm_score=False)"
                )
            feats /= norms[:, None]
        scale = inverse_count[chunk_start:chunk_end]
        if weights is not None:
            scale = scale * weights[rows]
        feats *= scale[:, None]
        local_starts = template_starts[
            np.searchsorted(template_starts, chunk_start) : next_start
        ] - chunk_start
        pooled[sorted_template[chunk_start + local_starts]] = np.add.reduceat(feats, local_starts, axis=0)
        chunk_start = chunk_end

    norms = np.sqrt(np.einsum("ij,ij->i", pooled, pooled))
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise MetricInputError(
            f"{zero.size} template feature(s) pool to zero and cannot be normalised: templates "
            f"{_rows_list(zero)} (all detector scores zero, or embeddings that cancel)"
        )
    pooled /= norms[:, None]
    record = PoolingRecord(flip=flip is not None, norm_score=bool(norm_score), detector_score=bool(detector_score))
    return pooled.astype(np.float32), record


# --------------------------------------------------------------------------------------------
# Template pairs
# --------------------------------------------------------------------------------------------


def _unit_rows_float32(matrix: np.ndarray, norms: np.ndarray) -> np.ndarray:
    # Rows no comparison uses may be NaN or zero; dividing them by 1 keeps numpy quiet and
    # their scores are never read.
    safe = np.where(np.isfinite(norms) & (norms > 0.0), norms, 1.0)
    unit = np.empty(matrix.shape, dtype=np.float32)
    for start in range(0, matrix.shape[0], _ROW_CHUNK):
        stop = start + _ROW_CHUNK
        unit[start:stop] = matrix[start:stop] / safe[start:stop, None]
    return unit


def _operand(
    unit: np.ndarray, rows: np.ndarray, index: np.ndarray, lookup: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """A matrix holding the distinct ``rows`` of ``unit``; writes each entry's row in it to ``position``.

    When the rows nearly fill their range ``[first, last]`` the matrix is that range as a view:
    a few unused rows cost less GEMM time than gathering a copy (per unused row a GEMM does
    ``2 * block * D`` flops, while a gather moves ``4 * D`` bytes per row of the whole range).
    Near the diagonal a block always has such holes (pair ``(i, i + 1)`` is rarely compared).
    Otherwise (a scattered gallery) the rows are gathered and positions come from a lookup
    table. ``position`` is preallocated intp scratch.
    """
    first, last = int(rows[0]), int(rows[-1])
    span = last - first + 1
    if span - rows.size <= span // _MAX_HOLE_FRACTION:
        np.subtract(index, first, out=position, dtype=np.intp)
        return unit[first : last + 1]
    lookup[rows] = np.arange(rows.size)
    np.take(lookup, index, out=position)
    return unit[rows]


def template_pair_scores(
    template_features: object, a: object, b: object, *, block: int = DEFAULT_TEMPLATE_BLOCK
) -> np.ndarray:
    """Cosine scores of template pairs ``(a[i], b[i])``, computed with float32 GEMMs.

    Features are L2-normalised first (so unnormalised input still gives cosines; the output of
    :func:`pool_templates` is already unit length). Then:

    1. each pair is taken as ``(lo, hi) = (min, max)``: the score is symmetric, so only the
       upper triangle of the score matrix is ever needed;
    2. the distinct ``lo`` templates are cut into blocks of ``block``; the pairs are grouped by
       block with a stable counting sort (O(n_pairs));
    3. per block, one GEMM of the block's ``lo`` rows against the distinct ``hi`` rows its pairs
       use (all ``>=`` the block's first row), then each pair's score is read from that matrix.

    Compared with a row-blocked GEMM of the whole matrix with itself this computes at most about
    half of the products (all of them only if pairs cover the whole triangle) and far fewer when
    the protocol is sparse (IJB-C compares ~15.7 M of 267 M possible pairs). Extra memory: the
    float32 unit features, an ``(n_pairs,)`` intp grouping, the ``(n_pairs,)`` float32 result,
    one ``block x n`` float32 score matrix (181 MiB for IJB-C's 23,124 templates) and scratch for
    the largest block's pairs; measured at IJB-C size: ~490 MiB including the 60 MiB result
    (``benchmarks/edc_scale.md``).

    Scores are float32: the products are float32 sums of 512 terms (relative error ~1e-6), well
    below any score difference a threshold at FMR 1e-3 resolves. Use :func:`cosine_scores` for
    float64 accuracy.

    >>> feats = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    >>> template_pair_scores(feats, [0, 2, 0, 1], [1, 1, 2, 1]).astype(float).round(4).tolist()
    [0.6, 0.8, 0.0, 1.0]
    >>> template_pair_scores(feats, [0, 3], [1, 1])
    Traceback (most recent call last):
    ...
    fiqabench.errors.MetricInputError: a: 1 index(es) out of range [0, 3): a[1] = 3
    """
    matrix = _as_matrix("template_features", template_features)
    n = matrix.shape[0]
    ia = _as_index("a", a, n)
    ib = _as_index("b", b, n)
    _check_same_length("a and b", ia, ib)
    block = int(block)
    if block < 1:
        raise MetricInputError(f"block must be a positive number of templates, got {block}")
    n_pairs = ia.size
    out = np.empty(n_pairs, dtype=np.float32)
    if n_pairs == 0:
        return out
    norms = _row_norms(matrix)
    _check_used_rows("template_features", norms, (ia, ib))
    unit = _unit_rows_float32(matrix, norms)

    # Blocks are made of *distinct* lo templates, so a protocol whose first templates are a
    # scattered subset (a gallery) still gets full-height GEMMs.
    is_lo = np.zeros(n, dtype=bool)
    for start in range(0, n_pairs, _PAIR_CHUNK):
        stop = start + _PAIR_CHUNK
        is_lo[np.minimum(ia[start:stop], ib[start:stop])] = True
    # Rank of each lo template among the distinct lo templates (rows before the first are never
    # looked up; clipping keeps them at 0 instead of -1).
    block_of_row = np.maximum(np.cumsum(is_lo) - 1, 0) // block
    n_blocks = int(block_of_row[-1]) + 1
    # A small unsigned dtype makes the stable argsort a radix sort, linear in n_pairs.
    block_dtype = np.min_scalar_type(n_blocks)
    block_of_row = block_of_row.astype(block_dtype)
    pair_block = np.empty(n_pairs, dtype=block_dtype)
    for start in range(0, n_pairs, _PAIR_CHUNK):
        stop = start + _PAIR_CHUNK
        pair_block[start:stop] = block_of_row[np.minimum(ia[start:stop], ib[start:stop])]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(pair_block, minlength=n_blocks))))
    order = np.argsort(pair_block, kind="stable")
    del pair_block

    lo_rows = np.flatnonzero(is_lo)
    mark = np.empty(n, dtype=bool)
    lookup = np.empty(n, dtype=np.intp)
    # Scratch for the largest block, reused by every block (fresh temporaries would fault in
    # ~90 MB of new pages per IJB-C block).
    most = int(np.diff(bounds).max())
    if ia.dtype != ib.dtype:
        # The scratch below holds both; mixed dtypes are rare enough to pay for one copy.
        ia, ib = ia.astype(np.intp), ib.astype(np.intp)
    index_dtype = ia.dtype  # narrow indices stay narrow (IJB-C fits int32)
    scratch_a = np.empty(most, dtype=index_dtype)
    scratch_b = np.empty(most, dtype=index_dtype)
    scratch_row = np.empty(most, dtype=np.intp)
    scratch_col = np.empty(most, dtype=np.intp)
    scratch_val = np.empty(most, dtype=np.float32)
    buffer = np.empty(0, dtype=np.float32)
    for k in range(n_blocks):
        idx = order[bounds[k] : bounds[k + 1]]
        size = idx.size
        lo, hi = scratch_a[:size], scratch_b[:size]
        np.take(ia, idx, out=lo)
        np.take(ib, idx, out=hi)
        np.minimum(lo, hi, out=scratch_row[:size])  # lo for now, as intp
        np.maximum(lo, hi, out=hi)
        lo[...] = scratch_row[:size]
        row, col = scratch_row[:size], scratch_col[:size]
        # The block's rows are known from the ranking; its columns are marked.
        left = _operand(unit, lo_rows[k * block : (k + 1) * block], lo, lookup, row)
        mark[:] = False
        mark[hi] = True
        right = _operand(unit, np.flatnonzero(mark), hi, lookup, col)
        n_rows, n_cols = left.shape[0], right.shape[0]
        if buffer.size < n_rows * n_cols:
            # The first block has the widest column range, so this grows at most a few times;
            # reusing one buffer avoids faulting in fresh pages for every block.
            buffer = np.empty(n_rows * n_cols, dtype=np.float32)
        np.matmul(left, right.T, out=buffer[: n_rows * n_cols].reshape(n_rows, n_cols))
        # Flat position of each pair's score in the block's row-major score matrix.
        row *= n_cols
        row += col
        out[idx] = np.take(buffer, row, out=scratch_val[:size])
    return out
