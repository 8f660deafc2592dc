"""``configs/paper.toml``: the DifFIQA paper's setup (Table 2, Figure 4) in one command.

The seven benchmarks are the small fixture trees of :mod:`tests.plugins.dataset_layouts` laid out
under one ``--data-root``; the four FR models are random-weight iResNet-18 checkpoints in each
project's layout (as in ``test_fr_models.py``); DifFIQA gets a user copy of the embedded DDPM
(a file the user gives is not the shipped one, so the domain check lets it through). The fixture
datasets have a handful of non-mated pairs, so the FMR is raised to 0.5 at test time.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from fiqabench.config import load_toml
from fiqabench.report.tables import AVG
from tests.conftest import REPO, load_json, run_cli
from tests.plugins import dataset_layouts as layouts
from tests.plugins.test_fr_models import arcface_torch_keys, evolve_keys, random_state

PAPER = REPO / "configs" / "paper.toml"
DATASETS = ["adience", "calfw", "cfp-fp", "cplfw", "ijbc", "lfw", "xqlfw"]
FR_MODELS = ["adaface", "arcface", "cosface", "curricularface"]
LABELS = {
    "datasets": ["Adience", "CALFW", "CFP-FP", "CPLFW", "IJB-C", "LFW", "XQLFW"],
    "fr_models": ["AdaFace", "ArcFace", "CosFace", "CurricularFace"],
}
BUILDERS = {
    "adience": lambda root: layouts.make_adience(root / "adience"),
    "calfw": lambda root: layouts.make_calfw(root / "calfw"),
    "cfp-fp": lambda root: layouts.make_cfp(root / "cfp-dataset"),
    "cplfw": lambda root: layouts.make_calfw(root / "cplfw", pair_name="pairs_CPLFW.txt", pad=False),
    "ijbc": lambda root: layouts.make_ijb(root / "IJBC"),
    "lfw": lambda root: layouts.make_lfw(root / "lfw"),
    "xqlfw": lambda root: layouts.make_xqlfw(root / "xqlfw"),
}


def data_root(tmp_path: Path, datasets: list[str]) -> Path:
    root = tmp_path / "data"
    for name in datasets:
        BUILDERS[name](root)
    return root


def checkpoint_flags(tmp_path: Path, fr_models: list[str]) -> list[str]:
    """Random-weight iResNet-18 checkpoints in each project's key layout (state dicts)."""
    flags = []
    for seed, name in enumerate(fr_models):
        if name in ("arcface", "cosface"):
            shapes = arcface_torch_keys()
        else:
            shapes = evolve_keys(adaface=name == "adaface")
        path = tmp_path / f"{name}-r18.pth"
        torch.save(random_state(shapes, seed=10 + seed), path)
        flags += ["--fr-option", f"{name}:weights={path}", "--fr-option", f"{name}:arch=iresnet18"]
    return flags


def diffiqa_flags(tmp_path: Path) -> list[str]:
    """A user's DDPM file (a copy of the embedded one: small, and loaded by the real loader), one
    noise repeat without the flip terms to keep the test short."""
    from fiqabench_plugins.diffiqa.method import DEFAULT_WEIGHTS

    weights = tmp_path / "my-ddpm.safetensors"
    shutil.copyfile(DEFAULT_WEIGHTS, weights)
    return [
        "--method-option", f"diffiqa:weights={weights}", "--method-option", "diffiqa:unet_config=embedded",
        "--method-option", "diffiqa:n=1", "--method-option", "diffiqa:flip=false",
    ]


def paper_run(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--config", str(PAPER), "--fmr", "0.5", "--output", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "-q", *extra]


def check_table_2(tex: str, datasets: list[str], fr_models: list[str], methods: list[str]) -> None:
    """Table 2's layout: one block per FR model (in the config's order), a row per method, a
    column per dataset (in the config's order) and the average."""
    assert "\\begin{tabular}{l" + "c" * len(datasets) + "c}" in tex
    header = " & ".join(["Method", *datasets, AVG]) + r" \\"
    assert header in tex, tex
    blocks = re.findall(r"\\textit\{FR model: ([^}]*)\}", tex)
    assert blocks == fr_models, blocks
    body = tex.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    for label, block in zip(fr_models, body.split(r"\multicolumn")[1:], strict=True):
        rows = [line for line in block.splitlines() if line.endswith(r"\\") and "FR model" not in line]
        assert [row.split(" & ")[0] for row in rows] == methods, (label, rows)
        for row in rows:
            cells = row.removesuffix(r"\\").strip().split(" & ")[1:]
            assert len(cells) == len(datasets) + 1, row
            assert all(re.fullmatch(r"(\\textbf\{|\\textcolor\{\w+\}\{)?\d\.\d{3}\}?(\$\^\{\*\}\$)?|n/a", c)
                       for c in cells), row


def check_figure_4(results: dict, datasets: list[str], fr_models: list[str]) -> None:
    """Figure 4's layout: a grid of EDC panels, one row per FR model and one column per dataset."""
    from fiqabench.report.plots import edc_figure

    figure = edc_figure(results)
    axes = figure.get_axes()
    assert len(axes) == len(datasets) * len(fr_models)
    titles = [ax.get_title() for ax in axes]
    assert titles == [f"{d} ({f})" for f in fr_models for d in datasets], titles


def test_paper_config_parses_and_names_the_paper_setup() -> None:
    config = load_toml(PAPER)  # fiqabench's own reader: every key known, every value typed
    assert config["datasets"] == DATASETS and config["fr_models"] == FR_MODELS
    assert config["fmr"] == 1e-3 and config["discard_limits"] == [0.2, 0.3]
    assert config["method_options"]["diffiqa"] == {"weights": "", "unet_config": "official", "quality_fr_model": "cosface"}
    assert all(config["fr_options"][name] == {"weights": "", "arch": "iresnet100"} for name in FR_MODELS)
    assert config["methods"] == ["diffiqa", "diffiqa-r", "cr-fiqa", "magface", "ser-fiq", "faceqan"]
    for name in ("diffiqa-r", "cr-fiqa", "magface"):
        assert config["method_options"][name] == {"weights": "", "arch": "iresnet100"}
    assert config["method_options"]["ser-fiq"] == {"quality_fr_model": "adaface"}


def test_without_weights_one_line_names_every_option_before_any_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for folder in ("adience", "calfw", "cfp-dataset", "cplfw", "IJBC", "lfw", "xqlfw"):
        (data / folder).mkdir(parents=True)
    result = run_cli(*paper_run(tmp_path, "--data-root", str(data)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in FR_MODELS:
        assert f"--fr-option {name}:weights=PATH" in lines[0]
    assert "diffiqa:weights=PATH" in lines[0]
    assert "cr-fiqa" in lines[0] and "magface" in lines[0] and "diffiqa-r" in lines[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_shipped_ddpm_is_refused_on_real_data_naming_the_options(tmp_path: Path) -> None:
    from fiqabench_plugins.diffiqa.method import DEFAULT_WEIGHTS

    root = data_root(tmp_path, ["calfw"])
    flags = [*checkpoint_flags(tmp_path, ["cosface"]), "--datasets", "calfw", "--fr-models", "cosface",
             "--data-root", str(root), "--method-option", "diffiqa:unet_config=embedded"]
    for weights in ("", str(DEFAULT_WEIGHTS)):
        result = run_cli(*paper_run(tmp_path, *flags, "--method-option", f"diffiqa:weights={weights}"))
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "fiqabench: error: method 'diffiqa' works on synthetic datasets with these options, but 'calfw' is"
            " 'aligned-112-face': its shipped DDPM was trained on the embedded synthetic faces; load real weights"
            " with --method-option diffiqa:weights=PATH --method-option diffiqa:unet_config=official;"
            " or pass --allow-domain-mismatch"
        ), result.stderr


def test_paper_config_two_datasets_one_fr_model(tmp_path: Path) -> None:
    """The fast variant: the paper's config on CALFW and CFP-FP with CosFace, end to end."""
    datasets, fr_models = ["calfw", "cfp-fp"], ["cosface"]
    root = data_root(tmp_path, datasets)
    result = run_cli(*paper_run(tmp_path, "--data-root", str(root), "--datasets", ",".join(datasets),
                                "--fr-models", ",".join(fr_models), "--methods", "diffiqa,random",
                                *checkpoint_flags(tmp_path, fr_models), *diffiqa_flags(tmp_path)))
    assert result.returncode == 0, result.stderr
    _check_outputs(tmp_path / "out", datasets, fr_models, ["DifFIQA", "Random"])


@pytest.mark.slow
def test_paper_config_regenerates_table_2_and_figure_4(tmp_path: Path) -> None:
    """``fiqabench run --config configs/paper.toml --data-root DIR``: seven datasets x four FR models."""
    root = data_root(tmp_path, DATASETS)
    result = run_cli(*paper_run(tmp_path, "--data-root", str(root), "--methods", "diffiqa,random",
                                *checkpoint_flags(tmp_path, FR_MODELS), *diffiqa_flags(tmp_path)))
    assert result.returncode == 0, result.stderr
    _check_outputs(tmp_path / "out", DATASETS, FR_MODELS, ["DifFIQA", "Random"])


def _check_outputs(out: Path, datasets: list[str], fr_models: list[str], methods: list[str]) -> None:
    results = load_json(out / "results.json")
    rows = results["results"]
    assert len(rows) == len(datasets) * len(fr_models) * len(methods)
    assert {(r["dataset"], r["fr_model"]) for r in rows} == {(d, f) for d in datasets for f in fr_models}
    assert {r["quality_fr_model"] for r in rows if r["method"] == "diffiqa"} == {"cosface"}
    assert results["config"]["discard_limits"] == [0.2, 0.3]
    dataset_labels = [LABELS["datasets"][DATASETS.index(d)] for d in datasets]
    fr_labels = [LABELS["fr_models"][FR_MODELS.index(f)] for f in fr_models]
    for limit in ("0.2", "0.3"):
        check_table_2((out / "tables" / f"pauc_{limit}.tex").read_text(), dataset_labels, fr_labels, methods)
    assert (out / "plots" / "edc.png").stat().st_size > 0 and (out / "plots" / "edc.pdf").is_file()
    check_figure_4(results, dataset_labels, fr_labels)


def test_readme_table_of_data_root_folders_is_the_registered_one() -> None:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    readme = (REPO / "README.md").read_text()
    table = {}
    for line in readme.split("## Real benchmarks", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for name in re.findall(r"`([a-z0-9-]+)`", cells[0]):
                table[name] = cells[1].strip("`").rstrip("/") if cells[1] != "–" else None
    registry = Registry(get_plugin_manager(entry_points=False, builtins=("fiqabench_plugins.datasets",)))
    assert table == {spec.name: spec.data_root_folder for spec in registry.entries("dataset")}
