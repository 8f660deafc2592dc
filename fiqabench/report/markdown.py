"""Markdown tables (pipe tables, via tabulate): the LaTeX tables for READMEs and issues.

``tables/pauc_<limit>.md`` holds one table per FR model; ``tables/runtime.md`` the runtimes.
The best value of every column, the average included, is in bold; footnotes follow each table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tabulate import tabulate

from fiqabench.files import atomic_write
from fiqabench.report._io import write_table_files
from fiqabench.results import ERC_CONVENTION, MethodKey, Results, fmr_text, limit_key, parse as load
from fiqabench.report.tables import AVG, DECIMALS, PaucTable, format_ms, fr_sanity_rows, pauc_tables, runtime_table

__all__ = ["escape_markdown", "render_fr_sanity", "render_pauc", "render_runtime", "write"]

_SPECIAL = set("\\`*_[]<>|#")
_PARTIAL = "\\*"
_LINEAR = "§"
_DAGGER = "†"
_MISSING = "–"


def escape_markdown(text: object) -> str:
    r"""Escape characters that Markdown or a table cell would interpret.

    >>> print(escape_markdown("SER_FIQ & co | *x*"))
    SER\_FIQ & co \| \*x\*
    """
    return "".join("\\" + c if c in _SPECIAL else c for c in str(text))


def _cell(table: PaucTable, key: MethodKey, column: str, rank: int | None) -> str:
    state = table.state(key, column)
    if state == "null":
        return "n/a"
    if state == "missing":
        return _MISSING
    text = f"{table.values.at[key, column]:.{DECIMALS}f}"
    if rank == 1:
        text = f"**{text}**"
    if (key, column) in table.leakage:
        text += _DAGGER
    return text + (_PARTIAL if state == "partial" else "")


def _table_markdown(table: PaucTable) -> list[str]:
    columns = [*table.datasets, AVG]
    ranks = {column: table.ranks(column) for column in columns}
    headers = ["Method", *(escape_markdown(table.dataset_labels[d]) for d in table.datasets), AVG]
    body = [
        [
            escape_markdown(table.method_labels[key]) + (_LINEAR if key in table.linear else ""),
            *(_cell(table, key, column, ranks[column][key]) for column in columns),
        ]
        for key in table.keys
    ]
    text = tabulate(
        body,
        headers=headers,
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("left", *(["right"] * len(columns))),
    )
    lines = [f"### FR model: {escape_markdown(table.fr_model_label)}", "", text, ""]
    notes = []
    if any(table.state(key, AVG) == "partial" for key in table.keys):
        notes.append(f"{_PARTIAL} Average over the datasets with a defined pAUC only.")
    for (key, dataset), reason in table.null_reasons.items():
        method, where = table.method_labels[key], table.dataset_labels[dataset]
        notes.append(
            f"n/a: pAUC not defined for {escape_markdown(method)} on {escape_markdown(where)}:"
            f" {escape_markdown(reason)}"
        )
    if any(table.state(key, d) == "missing" for key in table.keys for d in table.datasets):
        notes.append(f"{_MISSING}: not evaluated.")
    for (key, dataset), reason in table.leakage.items():
        notes.append(
            f"{_DAGGER} Leakage: {escape_markdown(table.method_labels[key])} on"
            f" {escape_markdown(table.dataset_labels[dataset])} is not an independent result:"
            f" {escape_markdown(reason)}."
        )
    if table.linear:
        notes.append(
            f"{_LINEAR} Convention `{ERC_CONVENTION}`: the EDC was recomputed on a grid and linearly"
            " interpolated (legacy ERC), not the exact step function; its pAUC is not directly"
            " comparable with the other rows."
        )
    if notes:
        # A blank line between notes keeps each one its own paragraph when rendered.
        lines += [line for note in notes for line in (note, "")]
    return lines


def render_pauc(results: Mapping[str, Any] | Results, limit: float) -> str:
    """Markdown of every FR model's pAUC table at discard limit ``limit``."""
    view = load(results)
    key = limit_key(limit)
    fmr = fmr_text(view.fmr) if view.fmr is not None else "not recorded"
    lines = [
        f"## Normalised pAUC at discard limit {key}, FMR {fmr}",
        "",
        f"FNM-EDC pAUC up to {float(limit) * 100:g} % of the mated comparisons discarded; lower is"
        " better; the best value per column is in bold.",
        "",
    ]
    for table in pauc_tables(view, limit):
        lines += _table_markdown(table)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_runtime(results: Mapping[str, Any] | Results) -> str | None:
    """Markdown of the runtime table, or ``None`` when no method was timed."""
    view = load(results)
    runtime = runtime_table(view)
    if runtime.reference is None:
        return None
    ref_host, ref_device = runtime.reference
    body = []
    others: dict[tuple[str, str], None] = {}
    for record in runtime.frame.itertuples(index=False):
        if record.flagged:
            others.setdefault((record.host, record.device))
        body.append(
            [
                escape_markdown(record.method_label) + (_DAGGER if record.flagged else ""),
                f"{format_ms(record.mean)} ± {format_ms(record.std, record.mean)}",
                "–" if record.batch_size is None else str(record.batch_size),
                escape_markdown(record.device),
            ]
        )
    text = tabulate(
        body,
        headers=["Method", "Runtime [ms/image]", "Batch size", "Device"],
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("left", "right", "right", "left"),
    )
    lines = [
        "## Runtime per image",
        "",
        "Milliseconds per image, mean ± standard deviation over the timed batches after warm-up,"
        f" measured on {escape_markdown(ref_host)} ({escape_markdown(ref_device)}).",
        "",
        text,
    ]
    if others:
        where = "; ".join(f"{escape_markdown(h)} ({escape_markdown(d)})" for h, d in others)
        lines += [
            "",
            f"{_DAGGER} Measured on {where}, not on {escape_markdown(ref_host)}"
            f" ({escape_markdown(ref_device)}); not directly comparable.",
        ]
    return "\n".join(lines) + "\n"


def render_fr_sanity(results: Mapping[str, Any] | Results) -> str | None:
    """Markdown of the FR sanity figures (``protocols[].fr_sanity``), or ``None`` without any."""
    rows = fr_sanity_rows(results)
    if not rows:
        return None
    text = tabulate(
        [[escape_markdown(r["dataset_label"]), escape_markdown(r["fr_model_label"]), r["figure"],
          escape_markdown(r["value"])] for r in rows],
        headers=["Dataset", "FR model", "Figure", "Value"],
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("left", "left", "left", "right"),
    )
    return "\n".join([
        "## FR sanity",
        "",
        "How well the evaluation FR model verifies on each dataset, from the run's comparison scores:"
        " k-fold verification accuracy where the protocol has folds (threshold chosen on the other"
        " folds), else TAR at a fixed FAR. Far below the published figure of that FR model means a"
        " wrong alignment, colour order or input range, not a FIQA result.",
        "",
        text,
    ]) + "\n"


def write(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``tables/pauc_<limit>.md`` per discard limit, ``tables/runtime.md`` and
    ``tables/fr_sanity.md``."""
    written = write_table_files(results, out_dir, "md", render_pauc, render_runtime)
    sanity = render_fr_sanity(results)
    if sanity is not None:
        written.append(atomic_write(Path(out_dir) / "tables" / "fr_sanity.md", sanity))
    return written
