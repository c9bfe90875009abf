"""Benchmark: streaming the experiment dataset at 10x the local data (by repetition).

Writes ``benchmarks/results/experiment_dataset.json``: wells/s for reading + normalizing (cold: fills
the on-disk cache; warm: memory-maps it), wells/s including the cell-graph build, and peak RSS.
The input is the embedded LINCS plate (384 wells, 454 features) copied ``--copies`` times as separate
plate files with distinct plate ids, the layout JUMP/LINCS ship (one profile file per plate).

Run: ``.venv/bin/python benchmarks/bench_experiment_dataset.py [--copies 10]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from cgc_framework.plugin.records import SkipLog
from cgc_plugins.cells.profile_builder import ProfileCellBuilder
from cgc_plugins.datasets.experiment import CellPaintingExperiments, ExperimentParams
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS, EMBEDDED_PROFILES

OUT = Path(__file__).parent / "results" / "experiment_dataset.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run(copies: int, work: Path) -> dict:
    plate = pd.read_csv(EMBEDDED_PROFILES)
    files = []
    for k in range(copies):
        f = work / f"plate_{k:03d}.csv.gz"
        with gzip.open(f, "wt", compresslevel=1) as fh:
            plate.assign(Metadata_Plate=f"BENCH{k:03d}").to_csv(fh, index=False)
        files.append(f)
    del plate
    rss0 = peak_rss_mb()
    params = ExperimentParams(profiles=files, compounds=EMBEDDED_COMPOUNDS, cache_dir=work / "cache")
    builder = ProfileCellBuilder()
    out = {}
    for label, build in (("cold_read_normalize_cache", False), ("warm_read_from_cache", False),
                         ("warm_read_and_build_cell_graphs", True)):
        ds = CellPaintingExperiments(params)
        t = time.perf_counter()
        n = 0
        for rec in ds.records(SkipLog()):
            if build:
                builder.build(rec.fields["cell_profile"])
            n += 1
        dt = time.perf_counter() - t
        out[label] = {"treated_wells": n, "seconds": round(dt, 2), "wells_per_s": round(n / dt, 1)}
    wells = ds.counts["wells"]
    return {"copies": copies, "plates": copies, "wells_total": wells, "features": 454,
            "passes": out, "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_reading_mb": round(rss0, 1),
            "one_plate_matrix_mb": round(384 * 454 * 4 / 2**20, 2),
            "all_plates_matrix_mb_if_loaded_at_once": round(wells * 454 * 4 / 2**20, 2),
            "machine": f"{platform.machine()}, {platform.python_version()}, 2 CPU cores",
            "note": "records stream one plate file at a time; the peak RSS is dominated by the "
                    "interpreter + torch import (~rss_before_reading_mb), not by the data"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cgc-bench-exp-"))
    try:
        res = run(args.copies, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
