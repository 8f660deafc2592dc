"""The built-in report writers, registered like any third-party format.

Targets are ``"module:attr"`` strings, so importing this module (which listing formats does)
imports neither pandas nor matplotlib. Every writer reads the parsed ``results.json`` alone:

- ``csv``: wide pAUC tables, ``results.csv`` and ``edc_curves.csv``;
- ``markdown``: the pAUC and runtime tables for READMEs;
- ``latex``: booktabs tables in the DifFIQA paper's style (Tables 2 and 3);
- ``plots``: EDC curves (Figure 4 style) and quality-score histograms (Figure 5 style);
- ``parquet``: ``results.parquet`` and ``edc_curves.parquet`` (through pyarrow).

``results.json`` itself is written by the runner, not by a writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fiqabench import hookimpl

if TYPE_CHECKING:
    from fiqabench.hookspecs import RegisterCallback


@hookimpl
def fiqabench_register_report_writers(register: RegisterCallback) -> None:
    register(
        "csv", "fiqabench.report.csv:write", summary="CSV: wide pAUC tables, results.csv, edc_curves.csv"
    )
    register("markdown", "fiqabench.report.markdown:write", summary="Markdown pAUC and runtime tables")
    register(
        "latex",
        "fiqabench.report.latex:write",
        summary="booktabs LaTeX pAUC and runtime tables in the DifFIQA paper's style",
    )
    register(
        "plots", "fiqabench.report.plots:write", summary="EDC plots and quality histograms (PNG and PDF)"
    )
    register(
        "parquet",
        "fiqabench.report.parquet:write",
        summary="Parquet: results and EDC curves (through pyarrow)",
    )
