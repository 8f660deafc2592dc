"""EDC plots (DifFIQA Figure 4 style) and quality-score histograms (its Figure 5 style).

- ``plots/edc.png|pdf``: a grid with one row per FR model and one column per dataset; one curve
  per method, drawn as the exact right-continuous step function (``steps-post``) up to the
  largest discard limit; the same colour for a method in every panel; one shared legend.
  Curves of the ``erc-recomputed`` convention are linearly interpolated, so they are drawn as
  dashed straight segments and the title says so.
- ``plots/quality_<dataset>.png|pdf``: one histogram panel per method.

Figures are built with :class:`matplotlib.figure.Figure` on an explicit Agg canvas, never through
pyplot: nothing is registered in pyplot's global figure list (so nothing leaks or needs closing),
and the process-wide backend is left alone, so the writer also behaves inside a notebook.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fiqabench.files import atomic_write
from fiqabench.results import ERC_CONVENTION, MethodKey, Results, Row, fmr_text, parse as load

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["edc_figure", "linear_points", "palette", "quality_figures", "step_points", "write"]

XLABEL = "Fraction of discarded comparisons"
YLABEL = "FNMR"
_LEGEND_COLUMNS = 4


def palette(n: int) -> list[tuple[Any, Any]]:
    """``n`` distinct (colour, line style) pairs: ``tab10``, else ``tab20`` cycled with line styles.

    >>> [style for _, style in palette(22)][19:]
    ['-', '-.', '-.']
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    colours = [cmap(i) for i in range(cmap.N)]
    styles: list[Any] = ["-", "-.", ":", (0, (5, 1, 1, 1))]
    return [(colours[i % len(colours)], styles[(i // len(colours)) % len(styles)]) for i in range(n)]


def step_points(x: Sequence[float], y: Sequence[float], xmax: float) -> tuple[list[float], list[float]]:
    """The points of a right-continuous step curve on ``[0, xmax]``, the last value held to ``xmax``.

    >>> step_points([0.0, 0.1, 0.5], [0.3, 0.2, 0.1], 0.3)
    ([0.0, 0.1, 0.3], [0.3, 0.2, 0.2])
    """
    xs = [float(a) for a in x if a <= xmax]
    ys = [float(b) for a, b in zip(x, y, strict=True) if a <= xmax]
    if xs and xs[-1] < xmax:
        xs.append(float(xmax))
        ys.append(ys[-1])
    return xs, ys


def linear_points(x: Sequence[float], y: Sequence[float], xmax: float) -> tuple[list[float], list[float]]:
    """The points of a linearly interpolated curve on ``[0, xmax]``; nothing is extrapolated.

    >>> linear_points([0.0, 0.2, 0.4], [0.3, 0.2, 0.0], 0.3)
    ([0.0, 0.2, 0.3], [0.3, 0.2, 0.1])
    """
    xs = [float(a) for a in x if a <= xmax]
    ys = [float(b) for a, b in zip(x, y, strict=True) if a <= xmax]
    beyond = [(float(a), float(b)) for a, b in zip(x, y, strict=True) if a > xmax]
    if xs and beyond and xs[-1] < xmax:
        (x1, y1), x0, y0 = beyond[0], xs[-1], ys[-1]
        xs.append(float(xmax))
        ys.append(round(y0 + (y1 - y0) * (xmax - x0) / (x1 - x0), 12))
    return xs, ys


def _mpl(text: str) -> str:
    """Text as matplotlib prints it literally (``$`` would start mathtext)."""
    return text.replace("$", r"\$")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _method_styles(view: Results) -> dict[str, tuple[Any, Any]]:
    # Keyed by the document's method order, so a method keeps its colour in every figure.
    return dict(zip(view.methods, palette(len(view.methods)), strict=True))


def edc_figure(results: Mapping[str, Any] | Results) -> Figure | None:
    """The grid of EDC plots (rows: FR models, columns: datasets), or ``None`` without curves."""
    view = load(results)
    curves = [(row, points) for row in view.rows if (points := view.edc(row)) is not None]
    if not curves:
        return None
    fr_models = [f for f in view.fr_models if any(row.fr_model == f for row, _ in curves)]
    datasets = [d for d in view.datasets if any(row.dataset == d for row, _ in curves)]
    keys = [k for k in view.method_keys if any(row.key == k for row, _ in curves)]
    styles = _method_styles(view)
    xmax = view.max_limit
    n_rows, n_cols = len(fr_models), len(datasets)
    labels = {
        key: f"{view.method_labels[key[0]]} ({key[1]}, linear)"
        if view.is_linear(key)
        else view.method_label(key)
        for key in keys
    }
    width = max(3.3 * n_cols, 4.5)
    # Legend columns that fit the figure's width (about 0.07 in per character at "small").
    column_width = 0.7 + 0.07 * max(len(label) for label in labels.values())
    legend_columns = max(1, min(len(keys), _LEGEND_COLUMNS, int(width // column_width)))
    legend_rows = math.ceil(len(keys) / legend_columns)
    figure = _new_figure(width, 2.7 * n_rows + 0.25 * legend_rows + 0.9)
    axes = figure.subplots(n_rows, n_cols, squeeze=False, sharex=True)
    handles: dict[MethodKey, Any] = {}
    for row, (x, y) in curves:
        ax = axes[fr_models.index(row.fr_model)][datasets.index(row.dataset)]
        colour, style = styles[row.method]
        if row.linear:
            xs, ys = linear_points(x, y, xmax)
            (line,) = ax.plot(xs, ys, color=colour, linestyle="--", linewidth=1.2)
        else:
            xs, ys = step_points(x, y, xmax)
            (line,) = ax.plot(xs, ys, drawstyle="steps-post", color=colour, linestyle=style, linewidth=1.2)
        handles.setdefault(row.key, line)
    for i, fr_model in enumerate(fr_models):
        for j, dataset in enumerate(datasets):
            ax = axes[i][j]
            ax.set_xlim(0.0, xmax)
            ax.set_ylim(bottom=0.0)
            ax.grid(alpha=0.3)
            ax.set_title(
                _mpl(f"{view.dataset_labels[dataset]} ({view.fr_model_labels[fr_model]})"), fontsize="medium"
            )
            if not ax.lines:
                ax.text(0.5, 0.5, "no EDC", ha="center", va="center", transform=ax.transAxes)
            if i == n_rows - 1:
                ax.set_xlabel(XLABEL)
            if j == 0:
                ax.set_ylabel(YLABEL)
    figure.legend(
        [handles[key] for key in keys],
        [_mpl(labels[key]) for key in keys],
        loc="outside lower center",
        ncols=legend_columns,
        frameon=False,
        fontsize="small",
    )
    title = "FNM-EDC" + (f" at FMR {fmr_text(view.fmr)}" if view.fmr is not None else "")
    if any(row.linear for row, _ in curves):
        title += f"\ndashed: {ERC_CONVENTION} curves, linearly interpolated (not exact step functions)"
    figure.suptitle(title, fontsize="medium")
    return figure


def quality_figures(results: Mapping[str, Any] | Results) -> Iterator[tuple[str, Figure]]:
    """``(dataset, figure)`` of quality histograms, one panel per method; rows without one are skipped.

    Quality scores depend on the dataset, the method and the FR model the method uses inside
    (``quality_fr_model``), not on the evaluation FR model, so one panel per (method,
    ``quality_fr_model``) is drawn from the first row that has it.
    """
    view = load(results)
    styles = _method_styles(view)
    for dataset in view.datasets:
        panels: dict[tuple[str, Any], tuple[Row, tuple[list[float], list[float]]]] = {}
        for row in view.rows:
            if row.dataset != dataset:
                continue
            hist = view.histogram(row)
            if hist is not None:
                panels.setdefault((row.method, row.data.get("quality_fr_model")), (row, hist))
        if not panels:
            continue
        n_cols = min(len(panels), 4)
        n_rows = math.ceil(len(panels) / n_cols)
        figure = _new_figure(3.0 * n_cols + 0.4, 2.3 * n_rows + 0.6)
        axes = figure.subplots(n_rows, n_cols, squeeze=False)
        per_method = [method for method, _ in panels]
        for ax, ((method, quality_fr), (_row, (edges, counts))) in zip(
            axes.flat, panels.items(), strict=False
        ):
            colour, _ = styles[method]
            ax.stairs(counts, edges, fill=True, color=colour, alpha=0.8)
            title = view.method_labels[method]
            if per_method.count(method) > 1:
                title += f" ({quality_fr})"
            ax.set_title(_mpl(title), fontsize="medium")
            ax.set_xlabel("Quality score")
            ax.set_ylabel("Count")
            ax.set_axisbelow(True)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        figure.suptitle(
            _mpl(f"Quality score distributions on {view.dataset_labels[dataset]}"), fontsize="medium"
        )
        yield dataset, figure


def _save(figure: Figure, stem: Path) -> list[Path]:
    written = []
    for fmt in ("png", "pdf"):
        buffer = io.BytesIO()
        # No creation date in the PDF, so regenerating a report from the same results.json
        # gives the same bytes.
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
        written.append(atomic_write(stem.parent / f"{stem.name}.{fmt}", buffer.getvalue()))
    return written


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def write(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``plots/edc.{png,pdf}`` and ``plots/quality_<dataset>.{png,pdf}``."""
    view = load(results)
    plots_dir = Path(out_dir) / "plots"
    written = []
    figure = edc_figure(view)
    if figure is not None:
        written += _save(figure, plots_dir / "edc")
    for dataset, figure in quality_figures(view):
        written += _save(figure, plots_dir / f"quality_{_file_name(dataset)}")
    return written
