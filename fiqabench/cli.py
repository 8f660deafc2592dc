"""The ``fiqabench`` command: run / evaluate / list / plugins / report / cache / train.

Any :class:`~fiqabench.errors.FiqabenchError` becomes one line on stderr and exit status 2
(``--debug`` shows the traceback). Listing and ``--help`` never import torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fiqabench import __version__
from fiqabench.errors import ConfigError, FiqabenchError, InputFormatError

log = logging.getLogger("fiqabench")

LIST_KINDS = {
    "methods": "method",
    "datasets": "dataset",
    "fr-models": "fr_model",
    "formats": "format",
    "trainers": "trainer",
}


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--plugins-dir", action="append", default=argparse.SUPPRESS if suppress else [],
                        metavar="DIR", help="load every *.py file in DIR as a plugin (repeatable)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
                        help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="no progress bars")
    del default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiqabench",
        description="Benchmark face image quality assessment methods against face recognition models.",
    )
    parser.add_argument("--version", action="version", version=f"fiqabench {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run methods x datasets x FR models, write results, tables, plots")
    _common(run, suppress=True)
    run.add_argument("--methods", help="comma-separated FIQA methods (default: every method available)")
    run.add_argument("--datasets", help="comma-separated datasets (default: the embedded benchmark)")
    run.add_argument("--fr-models", help="comma-separated evaluation FR models (default: the dataset's)")
    run.add_argument("--data-root", metavar="DIR",
                     help="folder holding the datasets under their usual names (DIR/lfw, DIR/IJBC, ...)")
    run.add_argument("--output", metavar="DIR", help="output directory (default: fiqabench-results/<UTC time>)")
    run.add_argument("--cache-dir", metavar="DIR", help="cache root (default: $FIQABENCH_CACHE_DIR or ~/.cache/fiqabench)")
    run.add_argument("--fmr", type=float, help="false match rate of the threshold (default 1e-3)")
    run.add_argument("--discard-limits", help="comma-separated pAUC discard limits (default 0.2,0.3)")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    run.add_argument("--batch-size", type=int, help="images per batch for every component (default 64)")
    run.add_argument("--seed", type=int, help="run seed for stochastic methods (default 0)")
    run.add_argument("--method-option", action="append", metavar="NAME:KEY=VALUE", help="method option (repeatable)")
    run.add_argument("--dataset-option", action="append", metavar="NAME:KEY=VALUE", help="dataset option (repeatable)")
    run.add_argument("--fr-option", action="append", metavar="NAME:KEY=VALUE", help="FR model option (repeatable)")
    run.add_argument("--on-failure", choices=("error", "lowest"),
                     help="a method returning NaN fails the run (error, default) or ranks lowest")
    run.add_argument("--template-quality", choices=("min", "mean"),
                     help="template quality rule for set-based protocols (default: the dataset's)")
    run.add_argument("--allow-domain-mismatch", action="store_true", default=None,
                     help="run FR models on datasets outside their declared domain")
    run.add_argument("--formats", help="comma-separated report formats (default: all available)")
    run.add_argument("--save-comparisons", action="store_true", default=None,
                     help="also write comparisons.csv (a,b,score,mated,dataset,fr_model; what evaluate reads)")
    run.add_argument("--config", metavar="FILE.toml", help="settings file; flags override it")
    run.add_argument("--dry-run", action="store_true",
                     help="print the tasks with cached and missing shards and an estimate of the time left, then exit")
    run.add_argument("--executor", choices=("local", "ray"), help="where shards run (default local)")
    run.add_argument("--devices", help="comma-separated devices, one worker each (e.g. cuda:0,cuda:1)")
    run.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)")

    lb = sub.add_parser("label", help="quality labels of a training set for distillation (e.g. DifFIQA -> DifFIQA(R))")
    _common(lb, suppress=True)
    lb.add_argument("--method", required=True, help="FIQA method whose scores become the labels (e.g. diffiqa)")
    lb.add_argument("--dataset", required=True, help="training set (a registered dataset, e.g. synthetic-train, folder)")
    lb.add_argument("--fr-model", help="FR model inside the method (default: the dataset's)")
    lb.add_argument("--output", required=True, metavar="LABELS",
                    help="folder to write labels.csv and provenance.json to")
    lb.add_argument("--method-option", action="append", metavar="KEY=VALUE", help="option of the method (repeatable)")
    lb.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="option of the dataset (repeatable)")
    lb.add_argument("--fr-option", action="append", metavar="KEY=VALUE", help="option of the FR model (repeatable)")
    lb.add_argument("--data-root", metavar="DIR", help="folder holding the datasets under their usual names")
    lb.add_argument("--cache-dir", metavar="DIR", help="cache root (shared with run: scores computed once serve both)")
    lb.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    lb.add_argument("--devices", help="comma-separated devices, one worker each (e.g. cuda:0,cuda:1)")
    lb.add_argument("--executor", choices=("local", "ray"), help="where shards run (default local)")
    lb.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)")
    lb.add_argument("--batch-size", type=int, help="images per batch (default 64)")
    lb.add_argument("--seed", type=int, help="run seed of stochastic methods (default 0)")
    lb.add_argument("--on-failure", choices=("error", "lowest"),
                    help="a NaN score fails the job (error, default) or the image is left out of the labels")
    lb.add_argument("--allow-domain-mismatch", action="store_true", default=None,
                    help="run components on datasets outside their declared domain")
    lb.add_argument("--dry-run", action="store_true", help="print cached / missing shards and the time left, then exit")

    ev = sub.add_parser("evaluate", help="evaluate your own comparison and quality scores")
    _common(ev, suppress=True)
    ev.add_argument("--comparisons", required=True, metavar="C.csv", help="columns a,b,score,mated[,dataset,fr_model]")
    ev.add_argument("--qualities", required=True, metavar="Q.csv", help="columns sample[,dataset] + one per method")
    ev.add_argument("--fmr", type=float, default=1e-3)
    ev.add_argument("--discard-limits", default="0.2,0.3")
    ev.add_argument("--distance", action="store_true", help="scores are distances (lower = same subject)")
    ev.add_argument("--lower-is-better", metavar="NAME,...", help="methods whose scores are lower-is-better")
    ev.add_argument("--on-failure", choices=("error", "lowest"), default="error")
    ev.add_argument("--formats", help="comma-separated report formats (default: all available)")
    ev.add_argument("--output", metavar="DIR")

    ls = sub.add_parser("list", help="list components with their availability")
    _common(ls, suppress=True)
    ls.add_argument("kind", choices=sorted(LIST_KINDS), nargs="?", default="methods")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    pl = sub.add_parser("plugins", help="list loaded plugins, their distributions and hooks")
    _common(pl, suppress=True)

    rp = sub.add_parser("report", help="regenerate tables and plots from a run's results.json")
    _common(rp, suppress=True)
    rp.add_argument("run_dir", metavar="DIR", help="run directory (or its results.json)")
    rp.add_argument("--format", action="append", help="format name (repeatable; default: all available)")
    rp.add_argument("--output", metavar="DIR", help="where to write (default: the run directory)")

    ca = sub.add_parser("cache", help="show or clear the cache")
    _common(ca, suppress=True)
    ca.add_argument("action", choices=("info", "clear"))
    ca.add_argument("--cache-dir", metavar="DIR")
    ca.add_argument("--dataset", help="only entries of this dataset (NAME or NAME@VERSION)")

    tr = sub.add_parser("train", help="train a model (e.g. the embedded FR model, the DifFIQA DDPM)")
    _common(tr, suppress=True)
    tr.add_argument("name", help="trainer name (fiqabench list trainers)")
    tr.add_argument("--dataset", help="registered dataset to train on (trainers that take one; see fiqabench list trainers)")
    tr.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="option of that dataset (repeatable)")
    tr.add_argument("--fr-model", help="registered FR model the trainer builds on (trainers that take one)")
    tr.add_argument("--fr-option", action="append", metavar="KEY=VALUE", help="option of that FR model (repeatable)")
    tr.add_argument("--labels", metavar="LABELS", action="append",
                    help="label folder from `fiqabench label` (distillation trainers); repeat it to train on the"
                         " union of several (same method and FR model)")
    tr.add_argument("--option", action="append", metavar="KEY=VALUE", help="trainer option (repeatable)")
    tr.add_argument("--config", metavar="FILE.toml", help="trainer options as a TOML table")
    tr.add_argument("--output", required=True, metavar="PATH", help="weight file to write")
    tr.add_argument("--device", default="cpu")
    return parser


def _registry(args: argparse.Namespace) -> Any:
    from fiqabench.plugins import get_plugin_manager
    from fiqabench.registry import Registry

    plugin_set = get_plugin_manager(plugins_dirs=args.plugins_dir or [])
    for failure in plugin_set.failures:
        print(f"fiqabench: warning: {failure.describe()}", file=sys.stderr)
    return Registry(plugin_set)


def _progress_factory(quiet: bool, unit: str = "img") -> Any:
    """Progress bars on stderr (rate and ETA); ``unit`` is what ``total`` counts."""
    if quiet:
        from fiqabench.executors import null_progress

        return null_progress
    from tqdm import tqdm

    # Redirected to a file (a label job under nohup), a line a minute is enough.
    interactive = sys.stderr.isatty()

    def factory(total: int, desc: str, initial: int = 0) -> Any:
        return tqdm(total=total, desc=desc, unit=unit, leave=not interactive, file=sys.stderr, dynamic_ncols=True,
                    initial=initial, mininterval=0.1 if interactive else 60.0)

    return factory


def _default_output() -> Path:
    return Path("fiqabench-results") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _output_dir(path: Path) -> Path:
    """Create the output folder before any computation, so that a bad ``--output`` fails at once."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--output {path}: exists and is not a folder") from None
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot create the folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: the folder is not writable")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from fiqabench.config import load_toml, merge, parse_component_options, parse_floats, split_names
    from fiqabench.outputs import write_outputs
    from fiqabench.runner import build_plan, format_dry_run

    base = load_toml(args.config) if args.config else {}
    overrides = {
        "methods": split_names(args.methods),
        "datasets": split_names(args.datasets),
        "fr_models": split_names(args.fr_models),
        "data_root": args.data_root,
        "output": args.output,
        "cache_dir": args.cache_dir,
        "fmr": args.fmr,
        "discard_limits": parse_floats(args.discard_limits, "--discard-limits") if args.discard_limits else None,
        "device": args.device,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "on_failure": args.on_failure,
        "template_quality": args.template_quality,
        "allow_domain_mismatch": args.allow_domain_mismatch,
        "formats": split_names(args.formats),
        "save_comparisons": args.save_comparisons,
        "executor": args.executor,
        "devices": split_names(args.devices),
        "ray_address": args.ray_address,
        "method_options": parse_component_options(args.method_option, "--method-option"),
        "dataset_options": parse_component_options(args.dataset_option, "--dataset-option"),
        "fr_options": parse_component_options(args.fr_option, "--fr-option"),
    }
    config = merge(base, overrides)
    registry = _registry(args)
    for name in config.formats or ():
        registry.get("format", name)
    plan = build_plan(registry, config)
    runner = _runner(registry, config, args.quiet)
    if args.dry_run:
        print(format_dry_run(runner.dry_run(plan)))
        return 0
    out_dir = _output_dir(Path(config.output) if config.output else _default_output())
    result = runner.run(plan)
    written = write_outputs(registry, result, out_dir, config.formats)
    _print_summary(result["document"], out_dir, len(written), args.quiet)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    """A method's scores over a training set, as a ``label`` task of the engine (sharded, cached,
    resumable, on the local or the Ray executor), merged in sample order into a label folder."""
    from fiqabench.config import merge, split_names
    from fiqabench.runner import build_plan, format_dry_run

    method_options = _key_values(args.method_option, "--method-option")
    if args.fr_model:
        method_options["quality_fr_model"] = args.fr_model
    config = merge({}, {
        "methods": [args.method],
        "datasets": [args.dataset],
        "fr_models": [args.fr_model] if args.fr_model else None,
        "data_root": args.data_root,
        "cache_dir": args.cache_dir,
        "device": args.device,
        "devices": split_names(args.devices),
        "executor": args.executor,
        "ray_address": args.ray_address,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "on_failure": args.on_failure,
        "allow_domain_mismatch": args.allow_domain_mismatch,
        "method_options": {args.method: method_options},
        "dataset_options": {args.dataset: _key_values(args.dataset_option, "--dataset-option")},
        "fr_options": {args.fr_model: _key_values(args.fr_option, "--fr-option")} if args.fr_model else {},
    })
    registry = _registry(args)
    plan = build_plan(registry, config)
    runner = _runner(registry, config, args.quiet)
    if args.dry_run:
        print(format_dry_run(runner.dry_run_tasks(runner.label_tasks(plan))))
        return 0
    summary = runner.label(plan, Path(args.output))
    if not args.quiet:
        print(summary)
    return 0


def _runner(registry: Any, config: Any, quiet: bool) -> Any:
    """A runner on the executor and devices of ``config`` (devices checked first)."""
    from fiqabench.executors import make_executor
    from fiqabench.runner import Runner

    for device in config.devices or [config.device]:
        _check_device(device)
    executor = make_executor(config.executor, registry, config.devices or [config.device],
                             address=config.ray_address) if config.executor != "local" else None
    return Runner(registry, config, progress=_progress_factory(quiet), executor=executor)


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch {torch.__version__}")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: the MPS backend is not available here")


def _print_summary(document: dict[str, Any], out_dir: Path, n_files: int, quiet: bool) -> None:
    limits = [format(float(x), "g") for x in document["config"]["discard_limits"]]
    lines = []
    for row in document["results"]:
        paucs = "  ".join(
            f"pAUC@{k}={row['pauc'][k]:.3f}" if row["pauc"].get(k) is not None else f"pAUC@{k}=n/a" for k in limits
        )
        rt = row.get("runtime_ms_per_image")
        runtime = f"  {rt['mean']:.2f} ms/img" if rt else ""
        lines.append(
            f"{row['dataset']:<16} {row['fr_model']:<20} {row['method']:<14} "
            f"FNMR(0)={row['fnmr_at_zero']:.4f}  {paucs}{runtime}"
        )
    lines += [f"FR sanity {line}" for line in sanity_lines(document.get("protocols") or [])]
    if not quiet:
        print("\n".join(lines))
    print(f"wrote {n_files} files to {out_dir}")


def sanity_lines(protocols: Sequence[dict[str, Any]]) -> list[str]:
    """One line per dataset x FR model: its FR sanity figure (``protocols[].fr_sanity``)."""
    from fiqabench.results import fmr_text

    lines = []
    for protocol in protocols:
        sanity = protocol.get("fr_sanity")
        if not sanity:
            continue
        if sanity.get("kfold_accuracy"):
            acc = sanity["kfold_accuracy"]
            text = f"{acc['n_folds']}-fold accuracy {100 * acc['accuracy']:.2f} % ± {100 * acc['std']:.2f}"
        elif sanity.get("tar_at_far"):
            text = "  ".join(
                f"TAR@FAR={fmr_text(t['far'])} {100 * t['tar']:.2f} %" + ("" if t["resolved"] else " (FAR unresolved)")
                for t in sanity["tar_at_far"]
            )
        else:
            text = f"n/a ({sanity.get('note')})"
        lines.append(f"{protocol['dataset']:<16} {protocol['fr_model']:<20} {text}")
    return lines


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fiqabench.config import RunConfig, parse_floats, split_names
    from fiqabench.evaluate_csv import evaluate_files
    from fiqabench.outputs import write_outputs

    limits = parse_floats(args.discard_limits, "--discard-limits")
    RunConfig(fmr=args.fmr, discard_limits=limits).validate()  # the same checks as `run`
    registry = _registry(args)
    formats = split_names(args.formats)
    for name in formats or ():
        registry.get("format", name)
    out_dir = _output_dir(Path(args.output) if args.output else _default_output())
    document = evaluate_files(
        comparisons=Path(args.comparisons),
        qualities=Path(args.qualities),
        fmr=args.fmr,
        discard_limits=limits,
        distance=args.distance,
        lower_is_better=split_names(args.lower_is_better) or [],
        on_failure=args.on_failure,
    )
    written = write_outputs(registry, {"document": document, "qualities": None}, out_dir, formats)
    _print_summary(document, out_dir, len(written), args.quiet)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    kind = LIST_KINDS[args.kind]
    rows = []
    for entry in registry.entries(kind):
        reason = entry.unavailable_reason() if kind != "format" else None
        row: dict[str, Any] = {
            "name": entry.name,
            "version": entry.version,
            "available": reason is None,
            "reason": reason,
            "summary": entry.summary,
            "plugin": entry.plugin,
        }
        if kind == "method":
            need = entry.fr_need(None)
            row["needs_fr_model"] = need
            row["applies_to"] = registry.applicable_fr_models(entry) if need != "none" else None
            row["domains"] = list(entry.domains_for(None) or []) or "any"
            if entry.domain_hint:
                row["domain_hint"] = entry.domain_hint
        if kind in ("fr_model", "dataset"):
            row["domain"] = entry.domain
        if kind == "dataset":
            row["default_fr_models"] = list(entry.default_fr_models)
            row["data_root_folder"] = entry.data_root_folder
        if kind == "fr_model":
            try:
                caps = entry.capabilities_for(None)
            except FiqabenchError:  # a capabilities function that needs options the user must set
                caps = None
            row["capabilities"] = None if caps is None else {
                "differentiable": caps.differentiable, "has_dropout": caps.has_dropout,
                "has_trunk_head": caps.has_trunk_head, "unnormalised_embedding": caps.unnormalised_embedding,
            }
        if entry.options:
            row["options"] = {k: {"default": o.default, "help": o.help} for k, o in entry.options.items()}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        status = "available" if row["available"] else f"UNAVAILABLE: {row['reason']}"
        print(f"{row['name']} @ {row['version']}  [{status}]")
        if row["summary"]:
            print(f"    {row['summary']}")
        if kind == "method":
            applies = ("no FR model needed" if row["applies_to"] is None
                       else ", ".join(row["applies_to"]) or "no registered FR model")
            print(f"    needs from the FR model: {row['needs_fr_model']}; FR models it can use: {applies}; "
                  f"datasets: {row['domains']}")
            if row.get("domain_hint"):
                print(f"    on other datasets: {row['domain_hint']}")
        if row.get("domain"):
            print(f"    domain: {row['domain']}")
        if row.get("default_fr_models"):
            print(f"    default FR model (first available): {', '.join(row['default_fr_models'])}")
        if row.get("data_root_folder"):
            print(f"    folder under --data-root: {row['data_root_folder']}/")
        for key, option in (row.get("options") or {}).items():
            print(f"    option {key} (default {option['default']!r}): {option['help']}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from fiqabench.plugins import get_plugin_manager

    plugin_set = get_plugin_manager(plugins_dirs=args.plugins_dir or [])
    rows = []
    for name, plugin in sorted(plugin_set.pm.list_name_plugin(), key=lambda item: str(item[0])):
        hooks = sorted(h.name for h in plugin_set.pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": plugin_set.distributions.get(name), "hooks": hooks})
    failures = [
        {"name": f.name, "distribution": f.distribution, "error": f.error} for f in plugin_set.failures
    ]
    print(json.dumps({"plugins": rows, "failed": failures}, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fiqabench.outputs import write_reports
    from fiqabench.results import load_results

    document = load_results(args.run_dir)
    run_dir = Path(args.run_dir)
    source = run_dir / "results.json" if run_dir.is_dir() else run_dir
    out_dir = _output_dir(Path(args.output) if args.output else (run_dir if run_dir.is_dir() else run_dir.parent))
    registry = _registry(args)
    formats = args.format
    for name in formats or ():
        registry.get("format", name)
    written = write_reports(registry, document, out_dir, formats, source=str(source))
    for path in written:
        print(path)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from fiqabench.cache import Cache, resolve_cache_root

    cache = Cache(resolve_cache_root(args.cache_dir))
    if args.dataset is not None and not cache.info(dataset=args.dataset):
        present = sorted({row["dataset"] for row in cache.info()})
        if present:  # a name that matches nothing is a typo, not an empty result
            raise ConfigError(
                f"--dataset {args.dataset}: no cache entries; the cache holds {', '.join(present)}"
                " (NAME matches every version, NAME@VERSION one)"
            )
    if args.action == "info":
        rows = cache.info(dataset=args.dataset)
        total = sum(r["bytes"] for r in rows)
        print(f"cache root: {cache.root}")
        for r in rows:
            state = "" if r["complete"] else "  (incomplete: resumes on the next run)"
            print(f"{r['kind']:<12} {r['dataset']:<16} {r['component']:<28} {r['key']}  {r['bytes'] / 1e6:8.2f} MB{state}")
        print(f"{len(rows)} entries, {total / 1e6:.2f} MB")
    else:
        removed = cache.clear(dataset=args.dataset)
        print(f"removed {removed} entries from {cache.root}")
    return 0


def _key_values(values: list[str] | None, flag: str) -> dict[str, str]:
    given: dict[str, str] = {}
    for item in values or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        given[key.strip()] = value
    return given


def cmd_train(args: argparse.Namespace) -> int:
    """Options from --config and --option; the dataset and FR model the trainer takes are resolved
    from the same registry as ``run`` (plugins from --plugins-dir included), checked and built
    here, and handed to the trainer."""
    from fiqabench.config import check_device_name, load_toml_table

    check_device_name(args.device)
    registry = _registry(args)
    entry = registry.get("trainer", args.name)
    given: dict[str, Any] = dict(load_toml_table(args.config)) if args.config else {}
    given.update(_key_values(args.option, "--option"))
    options = entry.resolve_options(given)
    inputs: dict[str, Any] = {}
    defaults = dict(entry.inputs)  # input -> default component name
    labels = None
    if "labels" in entry.inputs:
        labels, dataset_inputs, fr_default = _labels_input(registry, args)
        defaults["fr_model"] = defaults.get("fr_model") or fr_default
    elif args.labels:
        raise ConfigError(f"trainer {entry.name!r} takes no --labels")
    for kind, flag, name, option_flag, option_values in (
        ("dataset", "--dataset", args.dataset, "--dataset-option", args.dataset_option),
        ("fr_model", "--fr-model", args.fr_model, "--fr-option", args.fr_option),
    ):
        if kind == "dataset" and labels is not None:
            continue  # the labels' own dataset (above)
        if kind not in defaults:
            if name or option_values:
                raise ConfigError(f"trainer {entry.name!r} takes no {flag}")
            continue
        name = name or defaults[kind]
        if name is None:
            continue  # optional input left out: the trainer has another source (an option)
        component = registry.get(kind, name)
        component_options = component.resolve_options(_key_values(option_values, option_flag))
        reason = component.unavailable_reason(component_options)
        if reason:
            raise ConfigError(f"{flag} {name}: unavailable: {reason}")
        inputs[kind] = (component, component_options)
    _check_device(args.device)
    train = entry.load()
    built = {kind: spec.build(opts, args.device, resolved=True) for kind, (spec, opts) in inputs.items()}
    if labels is not None:
        datasets = []
        for label_set, (spec, opts) in zip(labels, dataset_inputs):
            dataset = spec.build(opts, args.device, resolved=True)
            manifest = dataset.manifest_digest()
            if manifest != label_set.dataset["manifest"]:
                raise ConfigError(
                    f"--labels {label_set.folder}: dataset {label_set.dataset['name']!r} has changed since the labels"
                    f" were computed (manifest {manifest[:12]}, labels {str(label_set.dataset['manifest'])[:12]})"
                )
            datasets.append(dataset)
        built["labels"], built["dataset"] = labels, tuple(datasets)
    # Trainers count their own units (steps, images): the bar says "it".
    progress = None if args.quiet else _progress_factory(False, unit="it")
    path = train(options=options, device=args.device, output=Path(args.output), progress=progress, **built)
    print(f"wrote {path}")
    return 0


def _labels_input(registry: Any, args: argparse.Namespace
                  ) -> tuple[tuple[Any, ...], list[tuple[Any, dict[str, Any]]], str | None]:
    """``--labels`` (one or more): each label folder, its dataset rebuilt from its provenance
    (``--dataset-option`` applies to every one and may relocate it, e.g. ``root=``; the manifest
    must still match) and the FR model inside the labelling method (the default backbone, as in the
    paper: CosFace for both), which several folders must share (:func:`fiqabench.labels.check_joinable`)."""
    from fiqabench.labels import check_joinable, read_labels

    if not args.labels:
        raise ConfigError(f"trainer {args.name!r} needs --labels LABELS (write them with `fiqabench label`)")
    label_sets = tuple(read_labels(folder) for folder in args.labels)
    check_joinable(label_sets)
    dataset_inputs = []
    for folder, labels in zip(args.labels, label_sets):
        info = labels.dataset
        if args.dataset and args.dataset != info.get("name"):
            raise ConfigError(f"--dataset {args.dataset}: the labels in {folder} were computed on {info.get('name')!r}")
        spec = registry.get("dataset", str(info.get("name")))
        given = dict(info.get("options") or {})
        given.update(_key_values(args.dataset_option, "--dataset-option"))
        options = spec.resolve_options(given)
        reason = spec.unavailable_reason(options)
        if reason:
            raise ConfigError(f"--labels {folder}: dataset {spec.name!r} is unavailable: {reason}"
                              " (relocate it with --dataset-option root=DIR)")
        dataset_inputs.append((spec, options))
    return label_sets, dataset_inputs, label_sets[0].provenance.get("quality_fr_model_name")


COMMANDS = {
    "run": cmd_run,
    "evaluate": cmd_evaluate,
    "list": cmd_list,
    "plugins": cmd_plugins,
    "report": cmd_report,
    "cache": cmd_cache,
    "train": cmd_train,
    "label": cmd_label,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    level = logging.WARNING - 10 * min(int(args.verbose or 0), 2)
    logging.basicConfig(level=level, format="fiqabench: %(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except FiqabenchError as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"fiqabench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fiqabench: interrupted; finished shards are cached, rerun the same command to resume",
              file=sys.stderr)
        return 130
