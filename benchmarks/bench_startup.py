"""Start-up time of the commands: how long until a command answers (``docs/performance.md``).

Measures, as a user types them, the median wall time of ``repeats`` runs of:

- ``cgc-plugins`` (list every component),
- ``cgc-run --help``,
- ``cgc-run registry.yaml --set optimizer.lr=-1`` (a config error: exit 2),
- ``cgc-run registry.yaml --dry-run --set model.encoder.name=hgtt`` (an unknown component: exit 2),

and which heavy libraries the process imported before answering. ``--source DIR`` measures another
checkout of the code (e.g. the previous commit in a ``git worktree``) with the installed
distribution's entry points, so "before" and "after" come from one run on one machine::

    python benchmarks/bench_startup.py --source /tmp/before --label before
    python benchmarks/bench_startup.py --label after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torch_geometric", "rdkit", "Bio", "ray", "deepchem", "pandas", "sklearn", "scipy")

COMMANDS = {
    "cgc-plugins": ("cgc_framework.cli", "plugins_main", []),
    "cgc-run --help": ("cgc_framework.cli", "main", ["--help"]),
    "cgc-run: config error": ("cgc_framework.cli", "main", ["registry.yaml", "--set", "optimizer.lr=-1"]),
    "cgc-run --dry-run: unknown component": ("cgc_framework.cli", "main",
                                             ["registry.yaml", "--dry-run", "--set", "model.encoder.name=hgtt"]),
}

PROBE = """
import sys, json, os
if os.environ.get("CGC_BENCH_SOURCE"):  # measure another checkout: bypass the editable install's finder
    sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
    sys.path[:0] = [os.environ["CGC_BENCH_SOURCE"], os.path.join(os.environ["CGC_BENCH_SOURCE"], "plugins")]
sys.argv = ["cgc"] + json.loads(os.environ["CGC_BENCH_ARGS"])
mod = __import__(os.environ["CGC_BENCH_MODULE"], fromlist=["x"])
try:
    code = getattr(mod, os.environ["CGC_BENCH_FUNC"])(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = [m for m in json.loads(os.environ["CGC_BENCH_HEAVY"]) if m in sys.modules]
sys.stdout.flush()
os.write(int(os.environ["CGC_BENCH_FD"]), json.dumps({"code": code, "heavy": heavy}).encode())
"""


def measure(source: Path | None, repeats: int) -> dict[str, dict]:
    out = {}
    for name, (module, func, args) in COMMANDS.items():
        times, info = [], {}
        for _ in range(repeats):
            r, w = os.pipe()
            env = dict(os.environ, CGC_BENCH_ARGS=json.dumps(args), CGC_BENCH_MODULE=module, CGC_BENCH_FUNC=func,
                       CGC_BENCH_HEAVY=json.dumps(HEAVY), CGC_BENCH_FD=str(w))
            if source is not None:  # another checkout first on the path; plugins it lacks are skipped
                env["CGC_BENCH_SOURCE"] = str(source)
                env["CGC_DISABLE_PLUGINS"] = "whatif"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, pass_fds=(w,),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - t)
            os.close(w)
            with os.fdopen(r) as fh:
                text = fh.read()
            info = json.loads(text) if text else {"code": None, "heavy": []}
        out[name] = {"median_s": round(statistics.median(times), 2), "min_s": round(min(times), 2),
                     "max_s": round(max(times), 2), "exit_code": info.get("code"),
                     "heavy_imports": info.get("heavy", [])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="a checkout of the code to measure instead of this one")
    parser.add_argument("--label", default="current", help="key of this measurement in the result file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "startup.json")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = {"source": str(args.source or REPO), "repeats": args.repeats,
                           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                           "commands": measure(args.source, args.repeats)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, r in results[args.label]["commands"].items():
        print(f"{args.label:>8}  {name:<40} {r['median_s']:6.2f} s  exit {r['exit_code']}  "
              f"heavy: {', '.join(r['heavy_imports']) or '-'}")


if __name__ == "__main__":
    main()
