"""Typed registration: fields checked when registered, factories checked against their Protocol,
capabilities matched against what methods need."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from fiqabench.errors import ComponentContractError, PluginLoadError
from fiqabench.plugins import get_plugin_manager
from fiqabench.registry import FRModelSpec, MethodSpec, Registry

from .conftest import FIXTURE_PLUGINS, run_cli


def _registry_with(tmp_path: Path, body: str) -> Registry:
    (tmp_path / "lab.py").write_text(textwrap.dedent(body))
    return Registry(get_plugin_manager(entry_points=False, builtins=(), plugins_dirs=[tmp_path]))


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        ('register("m", "x:y", version="1", colour="red")', ["plugin 'lab'", "unknown field(s) colour", "takes"]),
        ('register("m", "x:y", needs_fr_model="gpu")', ["'m'", "needs_fr_model='gpu'", "embeddings"]),
        ('register("m", "x:y", options={"n": 3})', ["options must map option names to fiqabench.api.Option"]),
        ('register("m", "x:y", domains="synthetic")', ["domains must be a tuple"]),
        ('register("m", "x:y", cost_ms_per_image=-1)', ["cost_ms_per_image must be a positive number"]),
        ('register("m", "no target")', ["target must be 'module:attr'"]),
        ('register("M", "x:y")', ["lowercase kebab-case"]),
    ],
)
def test_bad_registrations_are_one_line_errors_naming_the_plugin(
    tmp_path: Path, call: str, fragments: list[str]
) -> None:
    body = f"""
        from fiqabench import hookimpl

        @hookimpl
        def fiqabench_register_fiqa_methods(register):
            {call}
    """
    with pytest.raises(PluginLoadError) as info:
        _registry_with(tmp_path, body)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_factory_returning_the_wrong_object_names_the_plugin(tmp_path: Path) -> None:
    reg = _registry_with(tmp_path, """
        from fiqabench import hookimpl

        class NotAMethod:
            def __init__(self, *, options, device):
                pass

        @hookimpl
        def fiqabench_register_fiqa_methods(register):
            register("broken", NotAMethod, version="1")
    """)
    spec = reg.get("method", "broken")
    assert isinstance(spec, MethodSpec) and spec.version == "1"
    with pytest.raises(ComponentContractError, match=r"plugin 'lab' \(local file\).*not a FIQAMethod \(missing score\)"):
        spec.build({}, "cpu")


def test_fr_capabilities_declared_at_registration_are_checked_on_the_built_model() -> None:
    reg = Registry(get_plugin_manager(entry_points=False, builtins=(), plugins_dirs=[FIXTURE_PLUGINS]))
    fr = reg.get("fr_model", "toy-dropout-fr")
    assert isinstance(fr, FRModelSpec) and fr.capabilities_for().has_dropout
    assert fr.build({}, "cpu").capabilities.has_dropout
    lying = FRModelSpec(name="liar", target=fr.target, plugin="test", capabilities=reg.get("fr_model", "toy-fr").capabilities)
    with pytest.raises(ComponentContractError, match="differ from those registered"):
        lying.build({}, "cpu")
    method = reg.get("method", "toy-dropout")
    assert reg.applicable_fr_models(method) == ["toy-dropout-fr"]
    refusal = reg.fr_refusal(method, None, reg.get("fr_model", "toy-fr"), None)
    assert refusal == "toy-dropout needs an FR model with a dropout layer in its head; toy-dropout-fr has one, toy-fr has none"
    assert reg.fr_refusal(method, None, fr, None) is None


def test_capabilities_may_depend_on_options(tmp_path: Path) -> None:
    reg = _registry_with(tmp_path, """
        from fiqabench import FRCapabilities, Option, hookimpl

        @hookimpl
        def fiqabench_register_fr_models(register):
            register("onnx-like", "x:y", options={"backend": Option("torch", "", choices=("torch", "ort"))},
                     capabilities=lambda o: FRCapabilities(differentiable=o["backend"] == "torch"))

        @hookimpl
        def fiqabench_register_fiqa_methods(register):
            register("grad", "x:y", needs_fr_model="gradients")
    """)
    fr, method = reg.get("fr_model", "onnx-like"), reg.get("method", "grad")
    assert reg.fr_refusal(method, None, fr, {"backend": "torch"}) is None
    assert "onnx-like has none" in reg.fr_refusal(method, None, fr, {"backend": "ort"})


def test_list_methods_shows_which_fr_models_each_method_can_use() -> None:
    result = run_cli("list", "methods", "--json", "--plugins-dir", str(FIXTURE_PLUGINS))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    applies = set(rows["toy-dropout"]["applies_to"])
    assert {"synthetic-arcface", "toy-dropout-fr"} <= applies and "toy-fr" not in applies  # dropout in the head
    assert "toy-fr" in rows["toy-norm"]["applies_to"] and "synthetic-arcface" in rows["diffiqa"]["applies_to"]
    assert rows["random"]["applies_to"] is None
    fr_rows = {row["name"]: row for row in json.loads(run_cli("list", "fr-models", "--json").stdout)}
    assert fr_rows["synthetic-arcface"]["capabilities"]["has_dropout"] is True


def test_typed_values_reach_parsers_written_for_strings() -> None:
    """A TOML value (0.5, true) given to a plugin's parser that expects the command line's text."""
    from fiqabench.api import Option
    from fiqabench.options import resolve

    def rate(text: str) -> float | None:  # a plugin's parser, written for strings
        return None if text.strip() in {"", "none"} else float(text)

    def flag(text: str) -> bool:
        return text.strip() == "true"

    options = {"rate": Option(None, "", parse=rate), "flag": Option(False, "", parse=flag)}
    assert resolve(options, {"rate": 0.5, "flag": True}, name="m") == {"rate": 0.5, "flag": True}
    assert resolve(options, {"rate": "0.25"}, name="m") == {"rate": 0.25, "flag": False}
