"""``--kind command``: a ``cgc NAME`` command registered through the ``register_commands`` hook."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

COMMAND = '''\
"""The '$name' command: a census of a run's experiment graphs.

``cgc $name CONFIG`` composes CONFIG (a registry.yaml) with the installed
plugins, builds the experiment graphs of the first ``--records`` records of its dataset exactly as
``cgc-run`` would, and prints for every node and edge type of the composed schema how many graphs
have it and its mean count per graph, plus the records that were skipped and why: a quick check of
a new modality or edge source before pretraining.

Replace ``main`` with your command. Contract (``register_commands`` hook): ``main(argv) -> int``,
the exit code; for bad input print ``error: <message>`` to stderr and return 2. It runs as
``cgc $name ARGS...`` (``cgc --help`` lists it). It is registered as a lazy
``"module:function"`` reference, so listing commands does not import this module; import heavy
dependencies inside ``main``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

    from cgc_framework.plugin import GraphSchema


def main(argv: list[str] | None = None) -> int:
    """Node and edge counts of the experiment graphs of CONFIG's first N records, built as
    ``cgc-run`` builds them: ``cgc $name CONFIG [--records N] [--set KEY=VALUE] [--out CSV]``."""
    parser = argparse.ArgumentParser(prog="cgc $name", description=main.__doc__)
    parser.add_argument("config", help="a run configuration (registry.yaml)")
    parser.add_argument("--records", type=int, default=32, help="records of the dataset to build (default 32)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.dataset.params.path=other.csv")
    parser.add_argument("--out", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    if args.records < 1:
        print(f"error: --records must be at least 1, got {args.records}", file=sys.stderr)
        return 2

    from cgc_framework import plan_run
    from cgc_framework.plugin import CGCError, SkipLog

    try:
        plan = plan_run(args.config, overrides=args.overrides)
        skips = SkipLog()
        built = plan.build_graphs(itertools.islice(plan.dataset.records(skips), args.records))
    except CGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = census(plan.schema, built.graphs)
    print(f"{len(built.graphs)} experiment graphs from {built.records_read} records "
          f"({len(skips) + len(built.skips)} skipped)")
    print(f"{'kind':<5} {'type':<40} {'graphs_with':>11} {'mean_per_graph':>14}")
    for r in rows:
        print(f"{r['kind']:<5} {r['type']:<40} {r['graphs_with']:>11} {r['mean_per_graph']:>14.2f}")
    for entry in [*skips.entries, *built.skips.entries][:10]:
        print(f"skipped {entry.record_id} ({entry.component}): {entry.reason}")
    if args.out:
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def census(schema: GraphSchema, graphs: list[HeteroData]) -> list[dict[str, Any]]:
    """One row per node and edge type of ``schema``: graphs with at least one, mean count per graph."""
    n = max(len(graphs), 1)
    rows = []
    for kind, types in (("node", list(schema.node_types)), ("edge", list(schema.edge_types))):
        for t in types:
            counts = [_count(g, t, kind) for g in graphs]
            rows.append({"kind": kind, "type": t if kind == "node" else "|".join(t),
                         "graphs_with": sum(c > 0 for c in counts), "mean_per_graph": sum(counts) / n})
    return rows


def _count(graph: HeteroData, t: Any, kind: str) -> int:
    if kind == "node":
        return int(graph[t].num_nodes or 0) if t in graph.node_types else 0
    return int(graph[t].edge_index.size(1)) if t in graph.edge_types else 0
'''

TEST = '''\
"""The command is found through its entry point, reports real experiment graphs built from a
config, and answers bad input with exit code 2 and an error message."""

import csv

DIST = "$dist"
NAME = "$name"


$registered_test


def test_census_of_real_experiment_graphs(registry, config_file, tmp_path, capsys):
    main = registry.get("command", NAME).factory  # what `cgc $name ...` runs
    out = tmp_path / "census.csv"
    assert main([str(config_file()), "--records", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("3 experiment graphs from 3 records (0 skipped)")
    rows = {r["type"]: r for r in csv.DictReader(out.open())}
    assert rows["compound"]["graphs_with"] == "3" and float(rows["compound"]["mean_per_graph"]) == 1.0
    assert float(rows["compound|treats|compartment"]["mean_per_graph"]) == 3.0  # one per compartment
    assert "channel" in printed and "atom|bond|atom" in printed


def test_bad_input_exits_2_with_an_error(registry, tmp_path, capsys):
    main = registry.get("command", NAME).factory
    assert main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not found" in err
'''

KIND = Kind(
    help="a `cgc NAME` command (argparse main(argv) -> exit code)",
    summary="the '$name' command (`cgc $name`)",
    components=(Component("command", "$name", "command:main", None,
                          "census of a config's experiment graphs: node/edge counts per type, skipped records"),),
    files={"$package/command.py": COMMAND, "tests/test_plugin.py": TEST},
    about="The example, `cgc $name CONFIG`, composes a run configuration, builds the experiment graphs of "
          "its first records as `cgc-run` would, and prints node and edge counts per type with the skipped "
          "records (`$package/command.py`). Replace `main()` with your command; return 2 after "
          "`error: ...` on stderr for bad input.",
    usage="""\
Run it through the `cgc` entry point:

```bash
cgc $name registry.yaml --records 32 --out census.csv
```""",
)
