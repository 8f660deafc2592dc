"""Build the plugin manager: built-ins, ``--plugins-dir`` files, entry points.

Order: the built-in modules in :data:`BUILTIN_PLUGINS`; ``*.py`` files from each plugins
directory (``--plugins-dir`` or ``FIQABENCH_PLUGINS_DIR``, ``os.pathsep``-separated); then
packages declaring an entry point in the group ``fiqabench`` unless
``FIQABENCH_DISABLE_PLUGIN_AUTOLOAD=1``. ``FIQABENCH_DISABLE_PLUGINS=a,b`` blocks plugins by name
(module name for built-ins and files, entry-point name for packages). A plugin that fails to
import is recorded in :attr:`PluginSet.failures` with its distribution and error, and the others
still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from fiqabench import hookspecs
from fiqabench.errors import ConfigError, PluginLoadError

ENTRY_POINT_GROUP = "fiqabench"

#: First-party plugins, registered under their module names. They are not entry points, so a
#: stale install can never register them twice.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "fiqabench.report",
    "fiqabench_plugins.synthetic",
    "fiqabench_plugins.brackets",
    "fiqabench_plugins.diffiqa",
    "fiqabench_plugins.cr_fiqa",
    "fiqabench_plugins.magface",
    "fiqabench_plugins.ser_fiq",
    "fiqabench_plugins.faceqan",
    "fiqabench_plugins.distilled",
    "fiqabench_plugins.fr_models",
    "fiqabench_plugins.dlib",
    "fiqabench_plugins.datasets",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded."""

    name: str
    distribution: str | None
    error: str

    def describe(self) -> str:
        where = f" from distribution {self.distribution}" if self.distribution else ""
        return f"plugin {self.name!r}{where} failed to load: {self.error}"


@dataclass
class PluginSet:
    """The plugin manager plus what failed to load."""

    pm: pluggy.PluginManager
    failures: list[PluginFailure] = field(default_factory=list)
    #: plugin name -> "distribution version" for plugins that came from installed packages.
    distributions: dict[str, str] = field(default_factory=dict)
    #: The arguments that rebuild the same plugin set in another process (a worker of a local
    #: or Ray executor): plain data, with the environment's settings already applied.
    recipe: dict[str, Any] = field(default_factory=dict)


def _blocked_from_env() -> set[str]:
    raw = os.environ.get("FIQABENCH_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _plugins_dirs_from_env() -> list[str]:
    raw = os.environ.get("FIQABENCH_PLUGINS_DIR", "")
    return [part for part in raw.split(os.pathsep) if part]


def get_plugin_manager(
    *,
    entry_points: bool | None = None,
    plugins_dirs: Sequence[str | os.PathLike[str]] = (),
    builtins: Iterable[str] = BUILTIN_PLUGINS,
    blocked: Iterable[str] | None = None,
) -> PluginSet:
    """Build a fresh plugin manager (nothing happens at import time)."""
    pm = pluggy.PluginManager("fiqabench")
    pm.add_hookspecs(hookspecs)
    result = PluginSet(pm)
    blocked_names = set(blocked) if blocked is not None else _blocked_from_env()
    builtins = tuple(builtins)
    given_dirs = [str(d) for d in [*plugins_dirs, *_plugins_dirs_from_env()]]
    for name in blocked_names:
        pm.set_blocked(name)

    for module_name in builtins:
        if module_name in blocked_names:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # report, keep the others working
            result.failures.append(PluginFailure(module_name, "fiqabench", f"{type(exc).__name__}: {exc}"))
            continue
        pm.register(module, name=module_name)
        result.distributions[module_name] = _own_distribution()

    for directory in given_dirs:
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"--plugins-dir {directory}: not a directory")
        for file in sorted(path.glob("*.py")):
            name = file.stem
            if name in blocked_names or pm.has_plugin(name):
                continue
            try:
                spec = importlib.util.spec_from_file_location(f"fiqabench_local_plugin_{name}", file)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {file}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            except Exception as exc:
                result.failures.append(PluginFailure(str(file), None, f"{type(exc).__name__}: {exc}"))
                continue
            pm.register(module, name=name)

    if entry_points is None:
        entry_points = os.environ.get("FIQABENCH_DISABLE_PLUGIN_AUTOLOAD", "") not in {"1", "true"}
    if entry_points:
        _load_entry_points(pm, result, blocked_names)
    result.recipe = {
        "entry_points": bool(entry_points),
        "plugins_dirs": [str(Path(d).resolve()) for d in given_dirs],
        "builtins": builtins,
        "blocked": sorted(blocked_names),
    }

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise PluginLoadError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
    return result


def _load_entry_points(pm: pluggy.PluginManager, result: PluginSet, blocked: set[str]) -> None:
    # Done by hand rather than pm.load_setuptools_entrypoints so that one broken package is
    # reported with its distribution while the others still load.
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            if ep.name in blocked or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            dist_name = f"{dist.metadata['name']} {dist.version}"
            try:
                plugin = ep.load()
            except Exception as exc:
                result.failures.append(PluginFailure(ep.name, dist_name, f"{type(exc).__name__}: {exc}"))
                continue
            pm.register(plugin, name=ep.name)
            result.distributions[ep.name] = dist_name


def _own_distribution() -> str:
    from fiqabench import __version__

    return f"fiqabench {__version__}"
