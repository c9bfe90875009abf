"""The ``predict`` command (``cgc predict``, ``cgc-predict``): a thin wrapper over :class:`WhatIf`."""

from __future__ import annotations

import argparse
import sys

from cgc_framework.plugin import CGCError


def main(argv: list[str] | None = None) -> int:
    """``cgc predict CHECKPOINT --smiles ... --doses 0.1 1 10`` (also ``cgc-predict``): in-silico
    what-if. Predicts the change of every cell-node feature of a plate's control state under each
    compound at each dose with the pretrained causal head; writes tables (CSV/Parquet/JSON), PNG plots and summary.md to --out."""
    parser = argparse.ArgumentParser(prog="cgc-predict", description=main.__doc__)
    parser.add_argument("checkpoint", help="a cgc-framework checkpoint (e.g. <run>/checkpoints/final.pt)")
    parser.add_argument("--smiles", nargs="+", default=[], metavar="SMILES", help="query SMILES")
    parser.add_argument("--smiles-file", help="text file with one SMILES per line ('#' starts a comment), or a CSV "
                                              "with a 'smiles' column; empty rows are counted and named")
    parser.add_argument("--doses", nargs="+", default=[], metavar="UM", help="doses in uM, e.g. 0.1 1 10")
    parser.add_argument("--context", help="plate id or cell line of the checkpoint's data "
                                          "(default: its first plate; --list-contexts shows them)")
    parser.add_argument("--list-contexts", action="store_true", help="print the available contexts and exit")
    parser.add_argument("--config", help="the run's config (default: <run>/config.resolved.yaml of the checkpoint)")
    parser.add_argument("--task", help="key of the causal task in the checkpoint (default: the causal one)")
    parser.add_argument("--out", help="output directory (default: <run>/whatif of the checkpoint's run directory)")
    parser.add_argument("--top", type=int, default=10, help="top features per group and nearest compounds (default 10)")
    parser.add_argument("--rank-by", choices=["predicted", "centered", "measured"], default="predicted",
                        help="similarity that ranks the nearest known compounds (default: predicted)")
    parser.add_argument("--field", action="append", default=[], metavar="KEY=VALUE",
                        help="record field for the query compounds, e.g. --field inchikey=BSYNRYMUTXBXSQ-UHFFFAOYSA-N "
                             "(drug-target edges of a new compound; repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        from .predictor import WhatIf, check_doses

        bad = [f for f in args.field if "=" not in f]
        if bad:
            parser.error(f"--field takes KEY=VALUE, got {bad[0]!r}")
        fields = dict(f.split("=", 1) for f in args.field)

        from cgc_framework.engine.inputs import read_smiles_file, smiles_arguments

        given = smiles_arguments(args.smiles)
        smiles = list(given.smiles)
        notes = [f"--smiles: {given.describe_empty()} skipped"] if given.empty else []
        if args.smiles_file:
            rows = read_smiles_file(args.smiles_file)
            smiles += rows.smiles
            if rows.empty:
                notes.append(f"--smiles-file {args.smiles_file}: {rows.describe_empty()} skipped")
        for note in notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        if not args.list_contexts:
            if not smiles:
                parser.error("give --smiles and/or --smiles-file" + (f" ({'; '.join(notes)})" if notes else ""))
            if not args.doses:
                parser.error("give --doses (uM), e.g. --doses 0.1 1 10")
            doses = check_doses(args.doses)
        if not args.quiet:
            print(f"cgc-predict: loading {args.checkpoint} and its data", file=sys.stderr, flush=True)
        whatif = WhatIf(args.checkpoint, config=args.config, task=args.task, progress=not args.quiet)
        if args.list_contexts:
            for c in whatif.contexts.values():
                print(f"{c.plate}\t{c.cell_line or '-'}\t{c.records} records\t{c.compounds} compounds")
            return 0
        pred = whatif.predict(smiles, doses, args.context, top_k=args.top, rank_by=args.rank_by,
                              extra_fields=fields or None)
        args.out = args.out or str(whatif.pre.checkpoint.resolve().parent.parent / "whatif")
        files = pred.write(args.out, top=args.top)
    except (CGCError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in pred.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"predicted {len(pred.smiles)} compound(s) x {len(pred.doses_um)} dose(s) on {pred.context.label}: "
          f"{pred.meta['n_features']} cell features; wrote {len(files)} files to {args.out} "
          f"(summary: {files['summary']})" + (f"; {'; '.join(notes)}" if notes else ""))
    return 0
