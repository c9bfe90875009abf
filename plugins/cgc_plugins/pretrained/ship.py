"""``cgc ship-weights RUN_DIR --name NAME [--to DIR]``: a finished run -> a pretrained model folder.

Writes ``<DIR>/<NAME>/model.pt`` (the run's ``final.pt`` without optimizer and RNG state, so it is
small and loads with ``weights_only=True``), ``config.yaml`` (the run's ``config.resolved.yaml``)
and ``MODEL_CARD.md`` (what the weights are, the data they saw with checksums, the compute, the
run's evaluation results), copied from the run directory's own files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from cgc_framework.plugin import CGCError

KEEP = ("format", "model", "encoder", "tasks", "schema", "builders", "config_hash", "versions", "seed",
        "stage_index", "stage", "global_step")


def ship(run_dir: Path, name: str, to: Path) -> Path:
    """Write the model folder; returns it."""
    from cgc_framework.engine.checkpoint import load_checkpoint

    final = run_dir / "checkpoints" / "final.pt"
    ckpt = load_checkpoint(final)
    out = to / name
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in ckpt.items() if k in KEEP}, out / "model.pt")
    shutil.copy(run_dir / "config.resolved.yaml", out / "config.yaml")
    summary = (run_dir / "summary.md").read_text() if (run_dir / "summary.md").exists() else ""
    resources = json.loads((run_dir / "resources.json").read_text()) if (run_dir / "resources.json").exists() else {}
    size = (out / "model.pt").stat().st_size / 1e6
    card = [f"# Pretrained model `{name}`", "",
            f"- weights: `model.pt` ({size:.1f} MB), encoder `{ckpt['encoder']['name']}` "
            f"{json.dumps(ckpt['encoder']['params'])}",
            f"- produced by: `cgc-run config.yaml` (this folder's `config.yaml` is the resolved config of "
            f"the run), then `cgc ship-weights <run> --name {name}`",
            f"- trained: stage `{ckpt.get('stage')}`, {ckpt.get('global_step')} optimizer steps, seed "
            f"{ckpt.get('seed')}; packages: " + ", ".join(f"{k} {v}" for k, v in (ckpt.get("versions") or {}).items()),
            f"- compute: {resources.get('wall_seconds', '?')} s wall, peak memory of the process tree "
            f"{resources.get('peak_rss_tree_mb', '?')} MB; phases: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in (resources.get("phases") or {}).items()),
            "", "The run's own summary (data, checksums, skipped records, losses, evaluations) follows.", "",
            "---", "", summary]
    (out / "MODEL_CARD.md").write_text("\n".join(card))
    return out


def main(argv: list[str] | None = None) -> int:
    """``cgc ship-weights RUN_DIR --name NAME``: a finished run -> a shippable pretrained model folder."""
    parser = argparse.ArgumentParser(prog="cgc ship-weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished run directory (with checkpoints/final.pt)")
    parser.add_argument("--name", required=True, help="the model's name, e.g. default")
    parser.add_argument("--to", type=Path, default=Path(__file__).resolve().parent,
                        help="parent folder (default: this plugin's folder, i.e. shipped with the package)")
    args = parser.parse_args(argv)
    try:
        out = ship(args.run_dir, args.name, args.to)
    except (CGCError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0
