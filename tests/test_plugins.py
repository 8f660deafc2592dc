"""Plugin discovery: built-ins, --plugins-dir, entry points, blocking, failures, duplicates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fiqabench.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError
from fiqabench.plugins import BUILTIN_PLUGINS, get_plugin_manager
from fiqabench.registry import Registry

from .conftest import FIXTURE_PLUGINS, REPO


def registry(**kwargs) -> Registry:
    kwargs.setdefault("entry_points", False)
    return Registry(get_plugin_manager(**kwargs))


def test_builtins_register_and_every_plugin_package_is_listed() -> None:
    reg = registry()
    assert {"oracle", "random"} <= set(reg.names("method"))
    packages = {p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").is_file()}
    listed = {name.split(".")[1] for name in BUILTIN_PLUGINS if name.startswith("fiqabench_plugins.")}
    assert packages == listed, "every package under plugins/ must be in BUILTIN_PLUGINS (and only those)"


def test_plugins_dir_loads_single_files() -> None:
    reg = registry(plugins_dirs=[FIXTURE_PLUGINS])
    assert "toy" in reg.names("dataset") and "toy-norm" in reg.names("method")
    entry = reg.get("method", "toy-norm")
    assert entry.plugin == "toy" and entry.distribution is None
    assert "quality_fr_model" in entry.options  # added for every method that needs an FR model


def test_blocked_plugins_are_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIQABENCH_DISABLE_PLUGINS", "fiqabench_plugins.brackets,toy")
    reg = registry(plugins_dirs=[FIXTURE_PLUGINS])
    assert "random" not in reg.names("method") and "toy" not in reg.names("dataset")


def _write_plugin(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(body))


def test_failing_import_is_reported_and_others_still_work(tmp_path: Path) -> None:
    _write_plugin(tmp_path, "broken", "import does_not_exist_anywhere\n")
    plugin_set = get_plugin_manager(entry_points=False, plugins_dirs=[tmp_path, FIXTURE_PLUGINS])
    assert len(plugin_set.failures) == 1
    assert "broken.py" in plugin_set.failures[0].describe()
    assert "ModuleNotFoundError" in plugin_set.failures[0].describe()
    assert "toy" in Registry(plugin_set).names("dataset")


def test_duplicate_names_name_both_plugins(tmp_path: Path) -> None:
    _write_plugin(tmp_path, "again", """
        from fiqabench import hookimpl
        @hookimpl
        def fiqabench_register_fiqa_methods(register):
            register("random", "x:y", version="9", summary="clash", reference="")
    """)
    with pytest.raises(DuplicateComponentError, match="'fiqabench_plugins.brackets'.*'again'"):
        registry(plugins_dirs=[tmp_path])


def test_unknown_hook_name_fails_loudly(tmp_path: Path) -> None:
    _write_plugin(tmp_path, "typo", """
        from fiqabench import hookimpl
        @hookimpl
        def fiqabench_register_fiqa_method(register):
            pass
    """)
    with pytest.raises(PluginLoadError, match="typo"):
        registry(plugins_dirs=[tmp_path])


def test_unknown_name_suggests_close_matches() -> None:
    reg = registry()
    with pytest.raises(UnknownComponentError) as info:
        reg.get("method", "randm")
    message = str(info.value)
    assert "Did you mean 'random'" in message and "Available FIQA methods:" in message and "oracle" in message


def test_bad_registrations_are_plugin_errors(tmp_path: Path) -> None:
    _write_plugin(tmp_path, "badname", """
        from fiqabench import hookimpl
        @hookimpl
        def fiqabench_register_fiqa_methods(register):
            register("Bad_Name", "x:y", version="1")
    """)
    with pytest.raises(PluginLoadError, match="kebab-case"):
        registry(plugins_dirs=[tmp_path])


def _install_fake_distribution(site: Path) -> None:
    """A directory on sys.path holding the example package and its *.dist-info, as pip would."""
    example = REPO / "examples" / "third_party_plugin" / "fiqabench_brightness"
    package = site / "fiqabench_brightness"
    package.mkdir(parents=True)
    for file in example.glob("*.py"):
        (package / file.name).write_text(file.read_text())
    info = site / "fiqabench_brightness-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fiqabench-brightness\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[fiqabench]\nbrightness = fiqabench_brightness\n")


def test_entry_point_discovery_and_run_end_to_end(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install_fake_distribution(site)
    code = textwrap.dedent("""
        from fiqabench.plugins import get_plugin_manager
        from fiqabench.registry import Registry
        reg = Registry(get_plugin_manager(entry_points=True))
        e = reg.get("method", "brightness")
        print(e.plugin, e.distribution)
    """)
    env_path = f"{site}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": env_path,
                              "FIQABENCH_DISABLE_PLUGIN_AUTOLOAD": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "brightness fiqabench-brightness 0.1.0"

    from .conftest import run_cli, toy_run_args

    result = run_cli(*toy_run_args(tmp_path, "--formats", "csv", methods="brightness,random"),
                     env={"PYTHONPATH": env_path, "FIQABENCH_DISABLE_PLUGIN_AUTOLOAD": "0"})
    assert result.returncode == 0, result.stderr
    from .conftest import load_json

    rows = load_json(tmp_path / "out" / "results.json")["results"]
    assert {r["method"] for r in rows} == {"brightness", "random"}
    # Blocking the entry point by name removes it again.
    blocked = run_cli("list", "methods", env={"PYTHONPATH": env_path, "FIQABENCH_DISABLE_PLUGIN_AUTOLOAD": "0",
                                              "FIQABENCH_DISABLE_PLUGINS": "brightness"})
    assert blocked.returncode == 0 and "brightness" not in blocked.stdout


def test_broken_entry_point_is_reported_with_its_distribution(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "brokenpkg-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[fiqabench]\nbroken = brokenpkg_missing_module\n")
    from .conftest import run_cli

    result = run_cli("list", "methods", env={"PYTHONPATH": str(site), "FIQABENCH_DISABLE_PLUGIN_AUTOLOAD": "0"})
    assert result.returncode == 0
    assert "plugin 'broken' from distribution brokenpkg 2.0 failed to load" in result.stderr
    assert "random" in result.stdout


def test_hookspecs_are_documented_in_the_readme() -> None:
    import inspect

    from fiqabench import hookspecs

    readme = (REPO / "README.md").read_text()
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("fiqabench_"):
            signature = f"{name}{inspect.signature(function)}".replace("'", "")
            assert f"{name}(register)" in readme, f"README's plugin section must document {name}"
            assert "register" in signature
