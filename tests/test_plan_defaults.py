"""The plan's generic set-up rules: ``--data-root``, a default evaluation FR model chosen among
several, method domains that depend on the options, and every unavailable component refused in
one line. Plan-level only (nothing is built), on a small plugin written by each test."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from fiqabench.config import RunConfig, load_toml, merge
from fiqabench.errors import (
    ComponentUnavailableError,
    ConfigError,
    DomainMismatchError,
    InputFormatError,
    PluginLoadError,
)
from fiqabench.plan import build_plan
from fiqabench.plugins import get_plugin_manager
from fiqabench.registry import Registry

from .conftest import run_cli

LAB = """
from pathlib import Path

from fiqabench import Option, hookimpl


def rooted(options):
    root = options.get("root")
    if not root:
        return "set --dataset-option shelf:root=DIR, where DIR holds pairs.txt and img/"
    if not Path(root).is_dir():
        return f"root {root} is not a folder; it should hold pairs.txt and img/"
    return None


def weighted(name):
    def availability(options):
        if not options.get("weights"):
            return f"needs its weights: set --fr-option {name}:weights=PATH"
        return None if Path(options["weights"]).is_file() else f"weights file {options['weights']} does not exist"
    return availability


def trained_on(options):
    return ("toy",) if not options.get("weights") else None


@hookimpl
def fiqabench_register_datasets(register):
    register("shelf", "x:y", domain="faces", default_fr_model=("fr-a", "fr-b", "fr-c"), data_root_folder="Shelf",
             options={"root": Option(None, "folder")}, availability=rooted)
    register("rack", "x:y", domain="faces", default_fr_model=("fr-a", "fr-b"), data_root_folder="rack",
             options={"root": Option(None, "folder")}, availability=rooted)
    register("loose", "x:y", domain="faces", default_fr_model="fr-a", options={"root": Option(None, "folder")})


@hookimpl
def fiqabench_register_fr_models(register):
    for name in ("fr-a", "fr-b", "fr-c"):
        register(name, "x:y", domain="faces", availability=weighted(name),
                 options={"weights": Option(None, "weights", is_path=True)})


@hookimpl
def fiqabench_register_fiqa_methods(register):
    register("plain", "x:y", reference="test")
    register("inside", "x:y", reference="test", needs_fr_model="embeddings")
    register("shipped", "x:y", reference="test", domains=trained_on,
             domain_hint="load real weights with --method-option shipped:weights=PATH",
             options={"weights": Option(None, "weights", is_path=True)})
"""


@pytest.fixture()
def lab(tmp_path: Path) -> Registry:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "lab.py").write_text(textwrap.dedent(LAB))
    return Registry(get_plugin_manager(entry_points=False, builtins=(), plugins_dirs=[folder]))


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(b"w")
    return path


def _plan(registry: Registry, **values):
    config = RunConfig(**{"methods": ["plain"], **values})
    config.validate()
    return build_plan(registry, config)


def _fr(weights: Path, *names: str) -> dict:
    return {name: {"weights": str(weights)} for name in names}


# -- --data-root ---------------------------------------------------------------------------------


def test_data_root_sets_each_missing_root_to_the_datasets_folder(lab: Registry, tmp_path: Path, weights: Path) -> None:
    data = tmp_path / "data"
    (data / "Shelf").mkdir(parents=True)
    (data / "rack").mkdir()
    own = tmp_path / "elsewhere"
    own.mkdir()
    plan = _plan(lab, datasets=["shelf", "rack"], data_root=str(data), fr_options=_fr(weights, "fr-a"),
                 dataset_options={"rack": {"root": str(own)}})
    roots = {d.component.name: d.component.options["root"] for d in plan.datasets}
    assert roots == {"shelf": str(data / "Shelf"), "rack": str(own)}  # a given root wins


def test_data_root_from_the_toml_file_and_the_flag_wins(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('data_root = "/from/file"\n')
    assert merge(load_toml(path), {}).data_root == "/from/file"
    assert merge(load_toml(path), {"data_root": "/from/flag"}).data_root == "/from/flag"
    path.write_text("data_root = 3\n")
    with pytest.raises(InputFormatError, match="data_root: expected a string"):
        load_toml(path)


def test_dataset_without_root_names_both_ways_and_the_layout(lab: Registry, weights: Path) -> None:
    with pytest.raises(ComponentUnavailableError) as info:
        _plan(lab, datasets=["shelf"], fr_options=_fr(weights, "fr-a"))
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("dataset 'shelf' is unavailable", "--dataset-option shelf:root=DIR", "pairs.txt and img/",
                     "--data-root DIR with it in DIR/Shelf/"):
        assert fragment in message, message


def test_missing_folder_under_the_data_root_is_named(lab: Registry, tmp_path: Path, weights: Path) -> None:
    with pytest.raises(ComponentUnavailableError, match=r"root .*/Shelf is not a folder.*under --data-root"):
        _plan(lab, datasets=["shelf"], data_root=str(tmp_path), fr_options=_fr(weights, "fr-a"))
    with pytest.raises(ConfigError, match="--data-root .*nothing-here: no such folder"):
        _plan(lab, datasets=["shelf"], data_root=str(tmp_path / "nothing-here"))


def test_dataset_without_a_data_root_folder_is_not_looked_up(lab: Registry, tmp_path: Path, weights: Path) -> None:
    plan = _plan(lab, datasets=["loose"], data_root=str(tmp_path), fr_options=_fr(weights, "fr-a"))
    assert plan.datasets[0].component.options["root"] is None


def test_cli_data_root_flag_reaches_the_plan(tmp_path: Path) -> None:
    result = run_cli("run", "--datasets", "lfw", "--data-root", str(tmp_path), "--methods", "random",
                     "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "lfw is not a folder" in result.stderr and "under --data-root" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- default evaluation FR model: the first available ---------------------------------------------


def test_the_first_available_default_fr_model_is_used(lab: Registry, tmp_path: Path, weights: Path) -> None:
    common = dict(datasets=["shelf"], dataset_options={"shelf": {"root": str(tmp_path)}})
    chosen = _plan(lab, **common, fr_options=_fr(weights, "fr-b", "fr-c"))
    assert [fr.name for fr in chosen.datasets[0].fr_models] == ["fr-b"]
    first = _plan(lab, **common, fr_options=_fr(weights, "fr-a", "fr-b"))
    assert [fr.name for fr in first.datasets[0].fr_models] == ["fr-a"]
    # a method's FR model inside follows the same default
    inside = _plan(lab, **{**common, "methods": ["inside"]}, fr_options=_fr(weights, "fr-c"))
    assert inside.datasets[0].methods[0].quality_fr.name == "fr-c"
    explicit = _plan(lab, **common, fr_models=["fr-c"], fr_options=_fr(weights, "fr-c"))
    assert [fr.name for fr in explicit.datasets[0].fr_models] == ["fr-c"]


def test_no_available_default_fr_model_names_each_weights_option(lab: Registry, tmp_path: Path) -> None:
    roots = {"shelf": {"root": str(tmp_path)}, "rack": {"root": str(tmp_path)}}
    with pytest.raises(ComponentUnavailableError) as info:
        _plan(lab, datasets=["shelf", "rack"], dataset_options=roots)
    message = str(info.value)
    assert "\n" not in message
    for name in ("fr-a", "fr-b", "fr-c"):
        assert f"--fr-option {name}:weights=PATH" in message, message
    assert "pass --fr-models NAME" in message
    assert message.count("no evaluation FR model is available") == 2  # two lists of defaults


def test_every_unavailable_component_is_named_in_one_line(lab: Registry, tmp_path: Path) -> None:
    with pytest.raises(ComponentUnavailableError) as info:
        _plan(lab, datasets=["shelf", "rack"], fr_models=["fr-a", "fr-b"],
              dataset_options={"rack": {"root": str(tmp_path)}})
    message = str(info.value)
    assert "\n" not in message
    assert message.count("--fr-option fr-a:weights=PATH") == 1  # one FR model, two datasets: named once
    assert "--fr-option fr-b:weights=PATH" in message and "dataset 'shelf' is unavailable" in message
    assert "dataset 'rack'" not in message


# -- method domains as a function of the options -------------------------------------------------


def test_option_dependent_domain_refused_with_its_hint(lab: Registry, tmp_path: Path, weights: Path) -> None:
    common = dict(datasets=["shelf"], dataset_options={"shelf": {"root": str(tmp_path)}},
                  fr_options=_fr(weights, "fr-a"))
    with pytest.raises(DomainMismatchError) as info:
        _plan(lab, **common, methods=["shipped"])
    message = str(info.value)
    assert message == (
        "method 'shipped' works on toy datasets with these options, but 'shelf' is 'faces': load real weights"
        " with --method-option shipped:weights=PATH; or pass --allow-domain-mismatch"
    )
    with_weights = _plan(lab, **common, methods=["shipped"], method_options={"shipped": {"weights": str(weights)}})
    assert [m.component.name for m in with_weights.datasets[0].methods] == ["shipped"]
    overridden = _plan(lab, **common, methods=["shipped"], allow_domain_mismatch=True)
    assert [m.component.name for m in overridden.datasets[0].methods] == ["shipped"]


def test_default_method_list_skips_it_and_says_how_to_use_it(
    lab: Registry, tmp_path: Path, weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fiqabench"):
        plan = _plan(lab, methods=None, datasets=["shelf"], dataset_options={"shelf": {"root": str(tmp_path)}},
                     fr_options=_fr(weights, "fr-a"))
    assert "shipped" not in [m.component.name for m in plan.datasets[0].methods]
    assert "--method-option shipped:weights=PATH" in caplog.text


def test_list_methods_shows_the_domain_hint() -> None:
    result = run_cli("list", "methods")
    assert result.returncode == 0, result.stderr
    assert "on other datasets: its shipped DDPM" in result.stdout


# -- registration checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ('default_fr_model=("a", 3)', "default_fr_model must be a name or a tuple of names"),
        ("default_fr_model=()", "default_fr_model must be a name or a tuple of names"),
        ('data_root_folder="x"', "data_root_folder needs a 'root' option"),
        ('data_root_folder=""', "data_root_folder must be a folder name"),
    ],
)
def test_bad_dataset_fields_are_refused(tmp_path: Path, fields: str, fragment: str) -> None:
    (tmp_path / "bad.py").write_text(textwrap.dedent(f"""
        from fiqabench import hookimpl

        @hookimpl
        def fiqabench_register_datasets(register):
            register("d", "x:y", {fields})
    """))
    with pytest.raises(PluginLoadError, match=fragment):
        Registry(get_plugin_manager(entry_points=False, builtins=(), plugins_dirs=[tmp_path]))


def test_datasets_without_any_root_are_named_together_first(lab: Registry) -> None:
    with pytest.raises(ComponentUnavailableError) as info:
        _plan(lab, datasets=["shelf", "rack"], fr_models=["fr-a"])
    message = str(info.value)
    assert message.startswith(
        "datasets shelf, rack are unavailable: no root given; pass --data-root DIR holding DIR/Shelf/, DIR/rack/"
        " or --dataset-option NAME:root=DIR for each"
    ), message
    assert message.endswith("FR model 'fr-a' is unavailable: needs its weights: set --fr-option fr-a:weights=PATH")
