"""Command-line entry points; thin wrappers over :mod:`cgc_framework.api`.

``cgc COMMAND ...`` runs every command: the built-in ones below (``run``, ``plugins``, ``plugin``,
``bench``, ``embed``; also installed as ``cgc-run``, ``cgc-plugins``, ...) and those plugins add
through the ``register_commands`` hook (``cgc predict``). ``cgc --plugins-dir DIR COMMAND ...`` (and
``--plugins-dir DIR`` on ``cgc-run``, ``cgc-plugins``, ``cgc-bench``, ``cgc-embed``) loads unpackaged
plugin files during development.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from cgc_framework.plugin.errors import CGCError

PLUGINS_DIR_HELP = "also load every *.py file in DIR as a plugin (development; repeatable)"


def _add_plugins_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins-dir", action="append", default=[], metavar="DIR", help=PLUGINS_DIR_HELP)


def _use_plugins_dirs(dirs: list[str]) -> None:
    """Make ``dirs`` visible to every later registry load (this process and its Ray workers)."""
    from cgc_framework.engine.registry import PLUGINS_DIR_ENV

    if dirs:
        old = [d for d in os.environ.get(PLUGINS_DIR_ENV, "").split(os.pathsep) if d]
        os.environ[PLUGINS_DIR_ENV] = os.pathsep.join(old + [os.path.abspath(d) for d in dirs])


def _print_plugins(as_json: bool) -> None:
    from cgc_framework.engine.registry import load_registry

    components = load_registry().components()
    rows = [{"kind": c.kind, "name": c.name, "distribution": c.distribution, "version": c.version,
             "entry_point": c.entry_point, "description": c.description} for c in components]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) if rows else len(k)
              for k in ("kind", "name", "distribution", "version")}
    header = "  ".join(k.upper().ljust(widths[k]) for k in widths) + "  DESCRIPTION"
    print(header)
    for r in rows:
        print("  ".join(str(r[k]).ljust(widths[k]) for k in widths) + "  " + r["description"])


def plugins_main(argv: list[str] | None = None) -> int:
    """``cgc-plugins``: list every installed component with kind, name, distribution, version."""
    parser = argparse.ArgumentParser(prog="cgc-plugins", description=plugins_main.__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_plugins_dir(parser)
    args = parser.parse_args(argv)
    _use_plugins_dirs(args.plugins_dir)
    try:
        _print_plugins(args.json)
    except CGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def plugin_main(argv: list[str] | None = None) -> int:
    """``cgc-plugin new NAME --kind KIND``: write a ready-to-install plugin distribution.

    Kinds: dataset, modality, edge_source, encoder, task (pretraining), evaluator, command; the
    project has a working example of its kind and tests that pass as generated."""
    from cgc_framework.scaffold import KINDS, SUPPORTED_KINDS, new_plugin

    parser = argparse.ArgumentParser(prog="cgc-plugin", description=plugin_main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="create a plugin project from the template of a kind")
    new.add_argument("name", help="lower_snake_case name, e.g. l1000_expression")
    new.add_argument("--kind", default="modality", choices=SUPPORTED_KINDS,
                     help="what the plugin adds (default: modality): "
                          + "; ".join(f"{k}: {KINDS[k].help}" for k in SUPPORTED_KINDS))
    new.add_argument("--dir", default=".", help="parent directory (default: current)")
    args = parser.parse_args(argv)
    try:
        root = new_plugin(args.name, args.kind, args.dir)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {root}\nnext: pip install -e '{root}[test]' && python -m pytest -q {root}/tests && cgc-plugins")
    return 0


def bench_main(argv: list[str] | None = None) -> int:
    """``cgc-bench SWEEP.yaml``: run or resume a benchmark sweep; writes table, plots and report."""
    parser = argparse.ArgumentParser(prog="cgc-bench", description=bench_main.__doc__)
    parser.add_argument("sweep", help="sweep YAML, e.g. benchmarks/sweeps/stage_ablation.yaml")
    parser.add_argument("--quick", action="store_true", help="the sweep's bounded-time version")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a sweep-file value, e.g. "
                             "--set evaluations.fewshot.params.data_dir=/data/moleculenet")
    parser.add_argument("--report-only", action="store_true",
                        help="run no trial; rewrite table, plots and report from the trials finished so far")
    parser.add_argument("--validate", action="store_true",
                        help="check the sweep (every trial's components and params) and exit")
    parser.add_argument("--quiet", action="store_true")
    _add_plugins_dir(parser)
    args = parser.parse_args(argv)
    _use_plugins_dirs(args.plugins_dir)
    from cgc_framework.bench.sweep import run_sweep, validate_sweep

    try:
        if args.validate:
            trials = validate_sweep(args.sweep, quick=args.quick, overrides=args.overrides)
            print(f"{args.sweep}: valid, {len(trials)} trials")
            return 0
        out = run_sweep(args.sweep, quick=args.quick, progress=not args.quiet, overrides=args.overrides,
                        report_only=args.report_only)
    except CGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out / "report.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``cgc-run CONFIG``: pretrain as CONFIG says and write a run directory."""
    parser = argparse.ArgumentParser(
        prog="cgc-run", description="Causal Graph-Contrast pretraining: validate CONFIG, build "
        "experiment graphs, pretrain in stages on Ray Train workers, write a run directory.")
    parser.add_argument("config", nargs="?", help="registry.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set trainer.num_workers=2 (repeatable)")
    parser.add_argument("--run-dir", help="write here instead of <run.output_dir>/<run.name>-<time>")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted run from its newest good checkpoint")
    parser.add_argument("--address", help="Ray cluster to run on (same as --set trainer.ray_address=...)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--list-plugins", action="store_true", help="list installed components and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, compose and featurize; print the plan; do not train")
    _add_plugins_dir(parser)
    args = parser.parse_args(argv)
    _use_plugins_dirs(args.plugins_dir)
    try:
        if args.list_plugins:
            _print_plugins(False)
            return 0
        from cgc_framework.api import dry_run, resume, run

        if args.resume:
            print(resume(args.resume, progress=False if args.quiet else None).run_dir)
            return 0
        if not args.config:
            parser.error("CONFIG is required (e.g. cgc-run registry.yaml)")
        if args.address:
            args.overrides.append(f"trainer.ray_address={args.address}")
        if args.dry_run:
            print(dry_run(args.config, overrides=args.overrides, progress=not args.quiet))
            return 0
        result = run(args.config, overrides=args.overrides, run_dir=args.run_dir,
                     progress=False if args.quiet else None)
    except CGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.run_dir)
    return 0


def embed_main(argv: list[str] | None = None) -> int:
    """``cgc-embed CHECKPOINT``: embeddings of SMILES (molecule level) or of saved graphs, as CSV
    (Parquet when --out ends in .parquet).

    One row per input, columns row, smiles, e0..e{D-1} (row: the line of --smiles-file, or the
    position of the --smiles argument); rows that give no embedding (empty, invalid SMILES) are
    listed with the reason in <out>.skipped.csv. --model NAME uses shipped pretrained weights."""
    parser = argparse.ArgumentParser(prog="cgc-embed", description=embed_main.__doc__)
    parser.add_argument("checkpoint", nargs="?", help="a cgc-framework checkpoint (e.g. <run>/checkpoints/final.pt)")
    parser.add_argument("--model", help="instead of CHECKPOINT: a pretrained model shipped with an installed "
                                        "distribution (e.g. default; `cgc-plugins` lists them)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--smiles", nargs="+", metavar="SMILES", help="SMILES strings")
    src.add_argument("--smiles-file", help="text file with one SMILES per line ('#' starts a comment), or a CSV "
                                           "with a 'smiles' column; output column 'row' = the line in the file")
    src.add_argument("--graphs", help="a run's experiment graphs: <run>/data/shards (or a packed shard / "
                                      "graph_to_dict list file)")
    parser.add_argument("--level", choices=["molecule", "cell"], default="molecule",
                        help="with --graphs: which embedding (default molecule)")
    parser.add_argument("--state", choices=["treated", "control"], default="treated",
                        help="with --level cell: encode the treated profile (default) or the control state")
    parser.add_argument("--builder", help="molecule graph builder name (default: as recorded, else rdkit_molecule)")
    parser.add_argument("--out", required=True, help="output table: Parquet for a .parquet name, else CSV")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--map", metavar="LABELS_CSV", help="also write a 2-D map (PCA; UMAP with umap-learn) of the "
                        "embeddings coloured by a label column of this table, beside the untrained encoder's map, "
                        "each with its kNN label agreement: <out>.map.png, .map.csv, .map.scores.csv")
    labels.add_argument("--map-run-labels", metavar="COLUMN", help="like --map, coloured by a label the run already "
                        "has for each of its graphs (with --graphs): a field of its records (e.g. moa, cell_line, "
                        "source, cell_type) or a column of an evaluation table with a record_id column")
    parser.add_argument("--run", metavar="DIR", help="with --map-run-labels: the run directory (default: the one "
                                                     "holding CHECKPOINT, <run>/checkpoints/*.pt)")
    parser.add_argument("--label-column", default="label", help="with --map: the column to colour by (default label)")
    parser.add_argument("--map-key", help="with --map: the column joining labels to rows (default: the first of "
                                          "record_id, smiles, row, graph in both tables)")
    parser.add_argument("--map-method", choices=["auto", "pca", "umap"], default="auto",
                        help="with --map: projection (auto: UMAP when umap-learn is installed, else PCA)")
    _add_plugins_dir(parser)
    args = parser.parse_args(argv)
    _use_plugins_dirs(args.plugins_dir)
    try:
        import pandas as pd

        from cgc_framework.engine.inputs import write_table
        from cgc_framework.engine.pretrained import load_graphs, load_pretrained
        from cgc_framework.plugin.records import RecordError

        if (args.checkpoint is None) == (args.model is None):
            parser.error("give a CHECKPOINT or --model NAME (one of them)")
        pre = load_pretrained(args.model or args.checkpoint)
        note = ""
        if args.graphs:
            try:
                graphs = load_graphs(args.graphs)
            except Exception as exc:  # noqa: BLE001 - any unreadable file: name it, no traceback
                raise CGCError(f"{args.graphs}: cannot read as saved experiment graphs ({type(exc).__name__}: "
                               f"{str(exc).strip()[:160]}); give a run's <run>/data/shards directory") from None
            emb = pre.embed_graphs(graphs, args.level, state=args.state)
            ids = pd.DataFrame({"graph": range(emb.size(0))})
        else:
            ids, emb, note = _embed_smiles(pre, args)
        table = pd.concat([ids, pd.DataFrame(emb.numpy(), columns=[f"e{i}" for i in range(emb.size(1))])], axis=1)
        write_table(table, args.out)
        if args.map or args.map_run_labels:
            from cgc_framework.engine.embedding_map import map_for_cli

            note += map_for_cli(pre, ids, emb, args, graphs if args.graphs else None)
    except (CGCError, RecordError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(table)} embeddings of width {emb.size(1)} to {args.out}{note}")
    return 0


def _embed_smiles(pre, args: argparse.Namespace):
    """``(ids, embeddings, note)`` of ``--smiles`` / ``--smiles-file``: every row that gives no
    embedding (empty, rejected by the builder) goes to ``<out>.skipped.csv`` with its reason."""
    import pandas as pd

    from cgc_framework.engine.featurize import build_values
    from cgc_framework.engine.inputs import output_table, read_smiles_file, smiles_arguments
    from cgc_framework.plugin.errors import DataError
    from cgc_framework.plugin.records import RecordError

    given = read_smiles_file(args.smiles_file) if args.smiles_file else smiles_arguments(args.smiles)
    built = build_values(pre.builder("molecule", args.builder), given.smiles) if given.smiles else []
    skipped = [{"row": r, "smiles": "", "reason": "empty row (no SMILES)"} for r in given.empty]
    keep = []
    for row, smiles, graph in zip(given.rows, given.smiles, built):
        if isinstance(graph, RecordError):
            skipped.append({"row": row, "smiles": smiles, "reason": str(graph)})
        else:
            keep.append((row, smiles, pre.schema.conform(graph)))
    note, where, stem = "", "", output_table(args.out)[1]
    if skipped:
        path = stem.with_name(stem.name + ".skipped.csv")
        pd.DataFrame(sorted(skipped, key=lambda r: r["row"]), columns=["row", "smiles", "reason"]).to_csv(path, index=False)
        invalid = len(skipped) - len(given.empty)
        parts = ([f"{invalid} invalid SMILES skipped"] if invalid else []) + \
                ([f"{len(given.empty)} empty row{'s' if len(given.empty) != 1 else ''} skipped"] if given.empty else [])
        where = f"each row with its reason in {path}"
        note = f" ({', '.join(parts)}; {where})"
    if not keep:
        raise DataError(f"{given.source}: no SMILES gave an embedding ({len(given.smiles)} SMILES, "
                        f"{len(given.empty)} empty rows){'; ' + where if where else ''}")
    emb = pre.embed_graphs([g for _, _, g in keep], "molecule")
    # row: the line of --smiles-file, or the position of the --smiles argument (both from 1)
    ids = pd.DataFrame({"row": [r for r, _, _ in keep], "smiles": [s for _, s, _ in keep]})
    return ids, emb, note


BUILTIN_COMMANDS: dict[str, Callable[[list[str] | None], int]] = {
    "run": main, "plugins": plugins_main, "plugin": plugin_main, "bench": bench_main, "embed": embed_main}


def cgc_main(argv: list[str] | None = None) -> int:
    """``cgc COMMAND [ARGS...]``: run a built-in command or one a plugin registered."""
    argv = list(sys.argv[1:] if argv is None else argv)
    dirs: list[str] = []
    while len(argv) >= 2 and argv[0] == "--plugins-dir":
        dirs.append(argv[1])
        argv = argv[2:]
    _use_plugins_dirs(dirs)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: cgc [--plugins-dir DIR] COMMAND [ARGS...]\n\ncommands:")
        for name, fn in BUILTIN_COMMANDS.items():  # the docstring's first line without its ``usage``: prefix
            first = (fn.__doc__ or "").strip().splitlines()[0]
            print(f"  {name:<12} {first.split('``: ', 1)[-1]}")
        try:
            from cgc_framework.engine.registry import load_registry

            for info in (c for c in load_registry().components() if c.kind == "command"):
                print(f"  {info.name:<12} {info.description} ({info.distribution})")
        except CGCError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    name, rest = argv[0], argv[1:]
    if name in BUILTIN_COMMANDS:
        return BUILTIN_COMMANDS[name](rest)
    from cgc_framework.engine.registry import load_registry

    try:
        info = load_registry().get("command", name)
        command = info.factory
    except CGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(command(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cgc_main())
