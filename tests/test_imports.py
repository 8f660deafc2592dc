"""Layering: metrics and report writers import neither the runner nor the cache; the core imports
no plugin; the results schema and the file helpers import neither numpy nor torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

CORE = REPO / "fiqabench"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_metrics_and_report_writers_import_neither_runner_nor_cache() -> None:
    forbidden = {"fiqabench.runner", "fiqabench.cache", "fiqabench.tasks", "fiqabench.executors", "fiqabench.assemble"}
    for path in [*(CORE / "metrics").glob("*.py"), *(CORE / "report").glob("*.py")]:
        bad = {name for name in _imports(path) if any(name == f or name.startswith(f + ".") for f in forbidden)}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_core_imports_no_plugin() -> None:
    for path in CORE.rglob("*.py"):
        bad = {name for name in _imports(path) if name.startswith("fiqabench_plugins")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_results_schema_and_files_are_light() -> None:
    code = ("import sys, fiqabench.results, fiqabench.files, fiqabench.options, fiqabench.registry; "
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
