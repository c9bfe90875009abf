"""The resource monitor: the peak memory of the whole process tree, not the driver alone."""

from __future__ import annotations

import subprocess
import sys
import time

from cgc_framework.engine.resources import ResourceMonitor, stage_seconds

CHILD_MB = 200


def test_a_childs_memory_counts_in_the_tree_peak_and_phases_add_up():
    # a child that touches CHILD_MB of its own pages, then waits to be sampled
    code = f"b = bytearray({CHILD_MB} * 1024 * 1024); import time; time.sleep(3)"
    with ResourceMonitor(interval=0.05) as monitor:
        with monitor.phase("child"):
            proc = subprocess.Popen([sys.executable, "-c", code])
            time.sleep(2.0)
            proc.wait()
        with monitor.phase("child"):  # a repeated phase name adds up
            time.sleep(0.1)
    out = monitor.report()
    assert out["max_processes"] >= 2
    assert out["peak_rss_tree_mb"] >= out["peak_rss_driver_mb"] + CHILD_MB * 0.9
    if "peak_pss_tree_mb" in out:  # Linux: PSS counts shared pages once, so it is at most the RSS sum
        assert CHILD_MB * 0.9 <= out["peak_pss_tree_mb"] <= out["peak_rss_tree_mb"]
        biggest = out["processes_at_peak"][0]
        assert biggest["pss_mb"] >= CHILD_MB * 0.9 and biggest["name"].startswith("python")
    assert out["phases"]["child"] >= 2.1


def test_stage_seconds_sum_step_times_per_stage():
    import pandas as pd

    metrics = pd.DataFrame({"stage_index": [0, 0, 1], "stage": ["mask", "mask", "causal"], "time_s": [1.0, 2.0, 0.5]})
    assert stage_seconds(metrics) == {"stage 1 mask": 3.0, "stage 2 causal": 0.5}
    assert stage_seconds(None) == {}
