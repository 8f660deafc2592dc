"""Shared fixtures: an isolated cache, no third-party entry points, the toy plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE_PLUGINS = Path(__file__).parent / "fixture_plugins"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIQABENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("FIQABENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("FIQABENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("FIQABENCH_PLUGINS_DIR", raising=False)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m fiqabench ...`` in a subprocess (the real exit code and output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fiqabench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )


def toy_run_args(tmp_path: Path, *extra: str, methods: str = "random,toy-norm,toy-nan") -> list[str]:
    return [
        "run", "--plugins-dir", str(FIXTURE_PLUGINS), "--datasets", "toy", "--methods", methods,
        "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "-q", *extra,
    ]


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
