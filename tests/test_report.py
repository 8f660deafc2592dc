"""The built-in report writers: LaTeX, Markdown, CSV, plots and Parquet, from hand-made results.

The results document is built by hand: 2 FR models x 3 datasets x 4 methods, a tie at three
decimals, a null pAUC with its reason, a label with ``_`` and ``&``, a method timed on another
host and one ``erc-recomputed`` row. Every expected number below is worked out by hand.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fiqabench.errors import ComponentUnavailableError, InputFormatError
from fiqabench.report import csv as csv_writer
from fiqabench.report import latex, markdown, parquet, plots, tables

DATASETS = [("lfw", "LFW"), ("cfp-fp", "CFP-FP"), ("xqlfw", "XQLFW")]
FR_MODELS = [("arc", "ArcFace"), ("ada", "AdaFace")]
METHODS = [
    ("diffiqa", "DifFIQA"),
    ("cr-fiqa", "CR-FIQA"),
    ("ser-fiqa", "SER_FIQ & co"),
    ("magface", "MagFace"),
]

# pAUC at discard limit 0.2, per FR model, method: (lfw, cfp-fp, xqlfw). None is null.
PAUC_02 = {
    "arc": {
        # lfw: 0.8121 and 0.8124 both print 0.812 -> both bold (tie at 3 decimals).
        "diffiqa": (0.8121, 0.700, 0.650),  # avg 0.720700 -> green
        "cr-fiqa": (0.8124, 0.720, 0.640),  # avg 0.724133 -> blue; xqlfw best
        "ser-fiqa": (0.900, 0.690, None),  # avg (0.9 + 0.69) / 2 = 0.795, partial; cfp-fp best
        "magface": (0.850, 0.750, 0.700),  # avg 0.766667 -> red
    },
    "ada": {
        "diffiqa": (0.700, 0.710, 0.690),  # avg 0.700000 -> green (tie)
        "cr-fiqa": (0.7003, 0.700, 0.700),  # avg 0.700100 -> green (tie); lfw, cfp-fp best
        "ser-fiqa": (0.750, 0.760, 0.770),  # avg 0.760 -> red (dense: third distinct value)
        "magface": (0.720, 0.730, 0.740),  # avg 0.730 -> blue
    },
}
EXPECTED_AVG_02 = {
    "arc": {"diffiqa": 2.1621 / 3, "cr-fiqa": 2.1724 / 3, "ser-fiqa": 0.795, "magface": 2.3 / 3},
    "ada": {"diffiqa": 0.7, "cr-fiqa": 2.1003 / 3, "ser-fiqa": 0.76, "magface": 0.73},
}
NULL_REASON = "FNMR at 0% discard is 0: nothing to improve"
RUNTIME = {
    "diffiqa": (120.5, 3.2, "myhost", "cpu"),
    "cr-fiqa": (4.25, 0.5, "myhost", "cpu"),
    "ser-fiqa": (35.0, 1.0, "myhost", "cpu"),
    "magface": (1.5, 0.1, "gpu-box", "cuda:0"),  # another machine -> dagger
}


def _row(fr: tuple[str, str], ds: tuple[str, str], method: tuple[str, str], p02: float | None) -> dict:
    mean, std, host, device = RUNTIME[method[0]]
    row = {
        "dataset": ds[0],
        "dataset_label": ds[1],
        "fr_model": fr[0],
        "fr_model_label": fr[1],
        "method": method[0],
        "method_label": method[1],
        "method_version": "1.0",
        "quality_fr_model": "arc",
        "convention": "schlett2023-fixed-threshold",
        "fmr": 0.001,
        "threshold": 0.41,
        "fnmr_at_zero": 0.0 if p02 is None else 0.27,
        "n_mated": 4500,
        "n_non_mated": 100000,
        "pauc": {"0.2": p02, "0.3": None if p02 is None else round(p02 - 0.05, 4)},
        "pauc_raw": {"0.2": None if p02 is None else p02 * 0.27 * 0.2, "0.3": None},
        "pauc_null_reason": NULL_REASON if p02 is None else None,
        "n_failures": 0,
        "runtime_ms_per_image": {
            "mean": mean,
            "std": std,
            "median": mean,
            "n_batches": 16,
            "warmup_batches": 1,
            "batch_size": 64,
            "device": device,
            "host": host,
        },
        "edc": {
            "discard_fraction": [0.0, 0.1, 0.25, 0.5],
            "fnmr": [0.27, 0.2, 0.1, 0.05],
            "interpolation": "step",
        },
        "quality_histogram": {"bin_edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [1, 5, 9, 3]},
    }
    if method[0] == "magface":
        del row["quality_histogram"]  # rows without a histogram are skipped
    return row


def make_results() -> dict:
    rows = []
    # File order is not display order: datasets appear lfw, cfp-fp, xqlfw by first appearance.
    for fr in FR_MODELS:
        for method in METHODS:
            for i, ds in enumerate(DATASETS):
                rows.append(_row(fr, ds, method, PAUC_02[fr[0]][method[0]][i]))
    erc = _row(FR_MODELS[0], DATASETS[0], METHODS[1], 0.95)
    erc.update(convention="erc-recomputed", runtime_ms_per_image=None)
    erc["edc"] = {"discard_fraction": [0.0, 0.2, 0.4], "fnmr": [0.27, 0.17, 0.07], "interpolation": "linear"}
    rows.append(erc)
    return {
        "schema_version": 1,
        "created": "2026-11-29T07:00:00Z",
        "fiqabench_version": "0.1.0",
        "environment": {"host": "myhost", "device": "cpu"},
        "config": {"fmr": 0.001, "discard_limits": [0.2, 0.3], "seed": 0},
        "metric": {
            "curve": "fnm-edc",
            "convention": "schlett2023-fixed-threshold",
            "pair_quality": "min",
            "interpolation": "step",
        },
        "results": rows,
    }


@pytest.fixture
def results() -> dict:
    return make_results()


# ---------------------------------------------------------------- LaTeX helpers


def _strip_escapes(tex: str) -> str:
    return re.sub(r"\\[&%$#_{}]", "", tex)


def _tabular_rows(tex: str) -> list[str]:
    body = tex.split(r"\begin{tabular}", 1)[1].split(r"\end{tabular}", 1)[0]
    body = body.split("\n", 1)[1]  # drop the column spec line
    rows = []
    for line in body.splitlines():
        line = line.strip()
        if line.endswith(r"\\"):
            rows.append(line[:-2].strip())
    return rows


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)&", row)]


def _width(row: str) -> int:
    multi = re.match(r"\\multicolumn\{(\d+)\}", row)
    return int(multi.group(1)) if multi else len(_cells(row))


def _block(tex: str, fr_label: str) -> dict[str, list[str]]:
    """Method label -> cells of the rows under the FR model header ``fr_label``."""
    rows = _tabular_rows(tex)
    start = next(i for i, r in enumerate(rows) if f"FR model: {fr_label}" in r)
    block = {}
    for row in rows[start + 1 :]:
        if row.startswith(r"\multicolumn"):
            break
        cells = _cells(row)
        block[cells[0]] = cells[1:]
    return block


# ---------------------------------------------------------------- registration and light import


def test_registration_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, fiqabench.report\n"
        "heavy = [m for m in ('torch', 'pandas', 'matplotlib', 'tabulate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_formats_are_registered_and_load() -> None:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    registry = Registry(get_plugin_manager(entry_points=False, builtins=("fiqabench.report",), blocked=()))
    assert set(registry.names("format")) >= {"csv", "markdown", "latex", "plots", "parquet"}
    for name in ("csv", "markdown", "latex", "plots", "parquet"):
        entry = registry.get("format", name)
        assert entry.plugin == "fiqabench.report" and entry.summary
        assert callable(entry.load())


# ---------------------------------------------------------------- pure helpers and frames


def test_dense_ranks_ties_and_nulls() -> None:
    assert tables.dense_ranks([0.7, 0.7001, 0.73, 0.76, None, float("nan")]) == [1, 1, 2, 3, None, None]
    assert tables.dense_ranks([]) == []


def test_escape_latex_every_special_character() -> None:
    assert latex.escape_latex("a&b%c$d#e_f{g}h") == r"a\&b\%c\$d\#e\_f\{g\}h"
    assert latex.escape_latex("~^\\") == r"\textasciitilde{}\textasciicircum{}\textbackslash{}"


def test_pauc_table_values_and_averages(results: dict) -> None:
    arc, ada = tables.pauc_tables(results, 0.2)
    assert (arc.fr_model, ada.fr_model) == ("arc", "ada")
    assert arc.datasets == ["lfw", "cfp-fp", "xqlfw"]
    main = "schlett2023-fixed-threshold"
    # Methods in order of first appearance; the erc-recomputed row is its own row, last.
    assert arc.keys == [(m, main) for m, _ in METHODS] + [("cr-fiqa", "erc-recomputed")]
    assert ada.keys == [(m, main) for m, _ in METHODS]
    for table in (arc, ada):
        for method, expected in EXPECTED_AVG_02[table.fr_model].items():
            assert table.values.at[(method, main), tables.AVG] == pytest.approx(expected, abs=1e-12)
    assert arc.n_averaged[("ser-fiqa", main)] == 2
    assert arc.state(("ser-fiqa", main), "xqlfw") == "null"
    assert arc.null_reasons[(("ser-fiqa", main), "xqlfw")] == NULL_REASON
    assert arc.state(("ser-fiqa", main), tables.AVG) == "partial"
    erc = ("cr-fiqa", "erc-recomputed")
    assert arc.state(erc, "cfp-fp") == "missing"
    assert arc.values.at[erc, tables.AVG] == pytest.approx(0.95)
    assert arc.linear == frozenset({erc})


def test_runtime_table_flags_other_machine_and_pools(results: dict) -> None:
    runtime = tables.runtime_table(results)
    frame = runtime.frame
    assert list(frame["method"]) == ["diffiqa", "cr-fiqa", "ser-fiqa", "magface"]
    assert runtime.reference == ("myhost", "cpu")
    assert list(frame["flagged"]) == [False, False, False, True]
    # Identical copies on 6 rows count once: the statistics are the measurement's own.
    first = frame.iloc[0]
    assert (first["mean"], first["std"], first["median"], first["n_batches"], first["batch_size"]) == (
        120.5,
        3.2,
        120.5,
        16,
        64,
    )
    # Two distinct measurements of one method on one machine are pooled: batches 10,10 and 20,20
    # -> mean 15, population std 5.
    results["results"][0]["runtime_ms_per_image"] = {
        "mean": 10.0,
        "std": 0.0,
        "n_batches": 2,
        "batch_size": 64,
        "device": "cpu",
        "host": "myhost",
    }
    results["results"][1]["runtime_ms_per_image"] = {
        "mean": 20.0,
        "std": 0.0,
        "n_batches": 2,
        "batch_size": 64,
        "device": "cpu",
        "host": "myhost",
    }
    for row in results["results"][2:]:
        if row["method"] == "diffiqa":
            row["runtime_ms_per_image"] = None
    pooled = tables.runtime_table(results).frame.iloc[0]
    assert (pooled["mean"], pooled["std"], pooled["n_batches"]) == (15.0, 5.0, 4)
    assert pd.isna(pooled["median"])


# ---------------------------------------------------------------- LaTeX


def test_latex_structure(results: dict, tmp_path: Path) -> None:
    written = latex.write(results, tmp_path)
    assert sorted(p.name for p in written) == ["pauc_0.2.tex", "pauc_0.3.tex", "runtime.tex"]
    for path in written:
        tex = path.read_text()
        bare = _strip_escapes(tex)
        assert bare.count("{") == bare.count("}"), path.name
        assert re.findall(r"\\begin\{(\w+)\}", tex) == re.findall(r"\\end\{(\w+)\}", tex)[::-1]
        rows = _tabular_rows(tex)
        widths = {_width(row) for row in rows}
        assert widths == {5 if path.name != "runtime.tex" else 4}, (path.name, widths)
        assert "booktabs,xcolor" in tex
        for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert rule in tex


def test_latex_escapes_names(results: dict) -> None:
    tex = latex.render_pauc(results, 0.2)
    assert r"SER\_FIQ \& co" in tex
    assert "SER_FIQ & co" not in tex
    assert r"FNMR at 0\% discard is 0" in tex  # the null reason's % is escaped too


def test_latex_bold_and_colours(results: dict) -> None:
    tex = latex.render_pauc(results, 0.2)
    arc = _block(tex, "ArcFace")
    # Dataset columns: lfw tie (0.8121, 0.8124 -> 0.812) bold in both rows.
    assert arc["DifFIQA"][0] == r"\textbf{0.812}"
    assert arc["CR-FIQA"][0] == r"\textbf{0.812}"
    assert arc[r"SER\_FIQ \& co"][1] == r"\textbf{0.690}"
    assert arc["CR-FIQA"][2] == r"\textbf{0.640}"
    assert arc["MagFace"] == ["0.850", "0.750", "0.700", r"\textcolor{red}{0.767}"]
    assert arc["DifFIQA"][3] == r"\textcolor{green}{0.721}"
    assert arc["CR-FIQA"][3] == r"\textcolor{blue}{0.724}"
    # Null cell, partial average without a colour (fourth best).
    assert arc[r"SER\_FIQ \& co"][2:] == ["n/a", "0.795$^{*}$"]
    # The erc-recomputed row: named and marked (its method also has a step row), only lfw,
    # not bold (0.950 is not the best).
    assert arc[r"CR-FIQA (erc-recomputed)$^{\S}$"] == ["0.950", "--", "--", "0.950$^{*}$"]
    ada = _block(tex, "AdaFace")
    # Averages 0.700 and 0.7001 tie for green; dense ranking: 0.730 blue, 0.760 red.
    assert ada["DifFIQA"][3] == r"\textcolor{green}{0.700}"
    assert ada["CR-FIQA"][3] == r"\textcolor{green}{0.700}"
    assert ada["MagFace"][3] == r"\textcolor{blue}{0.730}"
    assert ada[r"SER\_FIQ \& co"][3] == r"\textcolor{red}{0.760}"
    assert ada["CR-FIQA"][:2] == [r"\textbf{0.700}", r"\textbf{0.700}"]
    assert ada["DifFIQA"][0] == r"\textbf{0.700}"  # 0.700 vs 0.7003: tied when printed
    assert ada["DifFIQA"][2] == r"\textbf{0.690}"


def test_latex_caption_and_footnotes(results: dict) -> None:
    tex = latex.render_pauc(results, 0.2)
    caption = re.search(r"\\caption\{(.*)\}\n", tex).group(1)
    assert "$10^{-3}$" in caption and "discard limit 0.2" in caption
    notes = tex.split(r"\end{tabular}")[1]
    assert "$^{*}$" in notes and "n/a" in notes and "erc-recomputed" in notes
    assert r"SER\_FIQ \& co on XQLFW (ArcFace)" in notes
    assert "discard limit 0.3" in latex.render_pauc(results, 0.3)


def test_latex_runtime_table(results: dict) -> None:
    tex = latex.render_runtime(results)
    rows = {_cells(r)[0]: _cells(r)[1:] for r in _tabular_rows(tex)}
    assert rows["DifFIQA"] == [r"120.5 $\pm$ 3.2", "64", "cpu"]
    assert rows["CR-FIQA"] == [r"4.25 $\pm$ 0.50", "64", "cpu"]
    assert rows[r"MagFace$^{\dagger}$"] == [r"1.50 $\pm$ 0.10", "64", "cuda:0"]
    notes = tex.split(r"\end{tabular}")[1]
    assert r"$^{\dagger}$" in notes and "gpu-box (cuda:0)" in notes and "myhost (cpu)" in notes


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(results: dict, tmp_path: Path) -> None:
    latex.write(results, tmp_path)
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,xcolor}\n\\begin{document}\n"
        "\\input{tables/pauc_0.2.tex}\n\\input{tables/runtime.tex}\n\\end{document}\n"
    )
    subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (tmp_path / "doc.pdf").stat().st_size > 0


# ---------------------------------------------------------------- Markdown


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables_, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif current:
            tables_.append(current)
            current = []
    return tables_


def test_markdown_tables(results: dict, tmp_path: Path) -> None:
    written = markdown.write(results, tmp_path)
    assert sorted(p.name for p in written) == ["pauc_0.2.md", "pauc_0.3.md", "runtime.md"]
    text = (tmp_path / "tables" / "pauc_0.2.md").read_text()
    arc, ada = _markdown_tables(text)
    assert arc[0] == ["Method", "LFW", "CFP-FP", "XQLFW", "Avg."]
    assert len(arc) == 2 + 5 and len(ada) == 2 + 4  # header, separator, rows
    assert all(len(row) == 5 for row in arc + ada)
    rows = {row[0]: row[1:] for row in arc[2:]}
    assert rows["DifFIQA"] == ["**0.812**", "0.700", "0.650", "**0.721**"]
    assert rows["CR-FIQA"][0] == "**0.812**"
    assert rows[r"SER\_FIQ & co"] == ["0.900", "**0.690**", "n/a", r"0.795\*"]
    assert rows["CR-FIQA (erc-recomputed)§"] == ["0.950", "–", "–", r"0.950\*"]
    assert "FMR 1e-3" in text and "discard limit 0.2" in text
    assert NULL_REASON in text and "erc-recomputed" in text
    runtime = (tmp_path / "tables" / "runtime.md").read_text()
    (table,) = _markdown_tables(runtime)
    assert table[0] == ["Method", "Runtime [ms/image]", "Batch size", "Device"]
    assert ["MagFace†", "1.50 ± 0.10", "64", "cuda:0"] in table
    assert "† Measured on gpu-box (cuda:0)" in runtime


# ---------------------------------------------------------------- CSV


def test_csv_round_trip(results: dict, tmp_path: Path) -> None:
    written = csv_writer.write(results, tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "tables/pauc_0.2.csv",
        "tables/pauc_0.3.csv",
        "results.csv",
        "edc_curves.csv",
    }
    wide = pd.read_csv(tmp_path / "tables" / "pauc_0.2.csv")
    assert list(wide.columns) == [
        "fr_model",
        "method",
        "convention",
        "method_label",
        "lfw",
        "cfp-fp",
        "xqlfw",
        "avg",
        "n_avg",
    ]
    assert len(wide) == 4 + 1 + 4
    ser = wide[(wide.fr_model == "arc") & (wide.method == "ser-fiqa")].iloc[0]
    assert ser["method_label"] == "SER_FIQ & co"
    assert pd.isna(ser["xqlfw"]) and ser["avg"] == pytest.approx(0.795) and ser["n_avg"] == 2
    for fr, expected in EXPECTED_AVG_02.items():
        for method, avg in expected.items():
            got = wide[
                (wide.fr_model == fr)
                & (wide.method == method)
                & (wide.convention == "schlett2023-fixed-threshold")
            ]["avg"].item()
            assert got == pytest.approx(avg, abs=1e-12)
    assert wide.loc[0, "lfw"] == 0.8121  # full precision survives the round trip

    long = pd.read_csv(tmp_path / "results.csv")
    assert len(long) == len(results["results"])
    for column in (
        "dataset",
        "fr_model",
        "method",
        "quality_fr_model",
        "convention",
        "fmr",
        "threshold",
        "fnmr_at_zero",
        "n_mated",
        "n_non_mated",
        "pauc_0.2",
        "pauc_0.3",
        "runtime_ms_mean",
        "runtime_ms_std",
        "runtime_ms_median",
    ):
        assert column in long.columns, column
    assert long["pauc_0.2"].tolist()[:3] == [0.8121, 0.700, 0.650]
    assert long["runtime_ms_mean"].isna().sum() == 1  # the erc-recomputed row was not timed

    curves = pd.read_csv(tmp_path / "edc_curves.csv")
    assert list(curves.columns) == ["dataset", "fr_model", "method", "convention", "discard_fraction", "fnmr"]
    assert len(curves) == 24 * 4 + 3
    erc = curves[curves.convention == "erc-recomputed"]
    assert erc["discard_fraction"].tolist() == [0.0, 0.2, 0.4]
    # Atomic writes leave no temporary files behind.
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


# ---------------------------------------------------------------- plots


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_written(results: dict, tmp_path: Path) -> None:
    written = plots.write(results, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["edc.png", "edc.pdf"] + [f"quality_{d}.{ext}" for d, _ in DATASETS for ext in ("png", "pdf")]
    )
    for path in written:
        assert path.parent == tmp_path / "plots" and path.stat().st_size > 0
        assert _is_png(path) if path.suffix == ".png" else path.read_bytes()[:5] == b"%PDF-"


def test_edc_figure_draws_steps_and_linear_erc(results: dict) -> None:
    figure = plots.edc_figure(results)
    axes = figure.axes
    assert len(axes) == 2 * 3
    assert axes[0].get_xlabel() == "" and axes[3].get_xlabel() == plots.XLABEL
    assert axes[0].get_ylabel() == plots.YLABEL and axes[0].get_xlim() == (0.0, 0.3)
    lines = axes[0].lines  # ArcFace x LFW: 4 step curves and the linear ERC one
    assert [line.get_drawstyle() for line in lines] == ["steps-post"] * 4 + ["default"]
    # The step curve holds its last value to the x limit; the linear one is interpolated there.
    assert list(lines[0].get_xdata()) == [0.0, 0.1, 0.25, 0.3] and lines[0].get_ydata()[-1] == 0.1
    assert list(lines[4].get_xdata()) == [0.0, 0.2, 0.3] and lines[4].get_ydata()[-1] == pytest.approx(0.12)
    # A method has one colour in every panel.
    colours = {tuple(ax.lines[1].get_color()) for ax in axes}
    assert len(colours) == 1 and colours == {tuple(lines[4].get_color())}
    assert "erc-recomputed" in figure.get_suptitle() and "linear" in figure.get_suptitle()
    assert len(figure.legends) == 1 and len(figure.legends[0].get_texts()) == 5


def test_plots_single_and_many(tmp_path: Path) -> None:
    one = make_results()
    one["results"] = one["results"][:1]
    written = plots.write(one, tmp_path / "one")
    assert sorted(p.name for p in written) == ["edc.pdf", "edc.png", "quality_lfw.pdf", "quality_lfw.png"]
    assert len(plots.edc_figure(one).axes) == 1

    many = make_results()
    template = many["results"][0]
    many["results"] = []
    for i in range(25):
        row = copy.deepcopy(template)
        row.update(method=f"m{i}", method_label=f"Method {i}")
        if i % 2:
            del row["quality_histogram"]
        many["results"].append(row)
    written = plots.write(many, tmp_path / "many")
    assert all(p.stat().st_size > 0 for p in written)
    figure = plots.edc_figure(many)
    assert len({line.get_color() for line in figure.axes[0].lines}) == 20  # tab20, then line styles
    assert len({(line.get_color(), str(line.get_linestyle())) for line in figure.axes[0].lines}) == 25


# ---------------------------------------------------------------- parquet and bad input


def test_parquet_unavailable_without_pyarrow(
    results: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with pytest.raises(ComponentUnavailableError, match=r"pip install 'pyarrow>=14'"):
        parquet.write(results, tmp_path)
    assert not list(tmp_path.iterdir())


def test_parquet_round_trip(results: dict, tmp_path: Path) -> None:
    written = parquet.write(results, tmp_path)
    assert pd.read_parquet(written[0]).shape[0] == len(results["results"])


@pytest.mark.parametrize("writer", [latex.write, markdown.write, csv_writer.write, plots.write])
def test_wrong_schema_version_is_refused(results: dict, tmp_path: Path, writer) -> None:
    results["schema_version"] = 2
    with pytest.raises(InputFormatError, match="schema_version: expected 1, got 2"):
        writer(results, tmp_path)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["results"][3].pop("method"), r"results\[3\]\.method"),
        (lambda r: r["results"][4].update(pauc=[0.1]), r"results\[4\]\.pauc"),
        (lambda r: r["results"][5]["pauc"].update({"0.2": "low"}), r"results\[5\]\.pauc\.0\.2"),
        (
            lambda r: r["results"][6]["runtime_ms_per_image"].pop("mean"),
            r"results\[6\]\.runtime_ms_per_image\.mean",
        ),
        (lambda r: r.pop("results"), "results: expected a list"),
        (lambda r: r["results"].append(copy.deepcopy(r["results"][0])), r"results\[25\]: duplicate result"),
    ],
)
def test_bad_input_names_the_field(results: dict, tmp_path: Path, mutate, field: str) -> None:
    mutate(results)
    with pytest.raises(InputFormatError, match=f"^results.json: {field}"):
        latex.write(results, tmp_path)


def test_bad_curve_names_the_field(results: dict, tmp_path: Path) -> None:
    results["results"][2]["edc"]["fnmr"] = [0.1]
    with pytest.raises(InputFormatError, match=r"results\[2\]\.edc"):
        csv_writer.write(results, tmp_path)
