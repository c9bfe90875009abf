"""Sweep files: the schema of a sweep YAML, ``${VAR}`` expansion, overrides, and the trial grid.

See :mod:`cgc_framework.bench.sweep` for the file format and what a sweep writes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cgc_framework.bench.summary import grid_label
from cgc_framework.engine.config import (
    ComponentRef,
    apply_overrides,
    expand_env,
    format_validation_error,
    read_yaml,
    set_dotted,
    validate_config,
)
from cgc_framework.plugin.errors import ConfigError


class QuickSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overrides: list[str] = Field(default_factory=list)
    seeds: list[int] | None = None
    evaluations: dict[str, ComponentRef] | None = None
    grid: dict[str, list[Any] | dict[str, Any]] | None = Field(
        None, description="replaces the axes it names; for a labelled axis a list of its labels picks "
                          "those values (e.g. `_suite: [dose, moa]`); other axes stay")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    base: Path
    output_dir: Path = Path("runs/sweeps")
    seeds: list[int] = Field([0], min_length=1)
    grid: dict[str, list[Any] | dict[str, Any]] = Field(default_factory=dict)
    overrides: list[str] = Field(default_factory=list, description="applied to every trial")
    evaluations: dict[str, ComponentRef] = Field(min_length=1)
    parallel: int = Field(1, ge=1, description="trials running at once (Ray tasks)")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="Ray GPUs per trial (with overrides "
                                  "[trainer.use_gpu=true] on a GPU cluster)")
    ray_address: str | None = None
    quick: QuickSection = Field(default_factory=QuickSection)


def apply_sweep_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Like :func:`~cgc_framework.engine.config.apply_overrides`, and a ``*`` in the dotted key stands for every
    item of a list or mapping, e.g. ``stages.*.epochs=1`` sets the epochs of every stage."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError("overrides", [f"'{item}': expected KEY=VALUE, e.g. stages.*.epochs=1"])
        key, raw = item.split("=", 1)
        concrete_keys = _expand_wildcards(data, key.split("."))
        if not concrete_keys:
            raise ConfigError("overrides", [f"'{item}': '*' matches nothing in the trial's config"])
        for concrete in concrete_keys:
            set_dotted(data, concrete, yaml.safe_load(raw))
    return data


def _expand_wildcards(node: Any, parts: list[str], prefix: str = "") -> list[str]:
    if "*" not in parts:
        return [prefix + ".".join(parts)]
    i = parts.index("*")
    for p in parts[:i]:  # walk to the container the wildcard ranges over
        node = node[int(p)] if isinstance(node, list) and p.isdigit() else (node or {}).get(p) \
            if isinstance(node, dict) else None
    head = prefix + "".join(p + "." for p in parts[:i])
    keys = [str(j) for j in range(len(node))] if isinstance(node, list) else \
        list(node) if isinstance(node, dict) else []
    out = []
    for k in keys:
        child = node[int(k)] if isinstance(node, list) else node[k]
        out += _expand_wildcards(child, parts[i + 1:], head + k + ".") if parts[i + 1:] else [head + k]
    return out


def load_sweep(path: str | Path, *, quick: bool = False,
               overrides: list[str] | None = None) -> tuple[SweepConfig, Path]:
    """Read and validate a sweep file; ``overrides`` (``key=value``) change the file itself, ``quick``
    applies its ``quick:`` section. Returns the sweep and the directory relative paths resolve from."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    raw = expand_env(raw, source=str(path))
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), format_validation_error(exc, model=SweepConfig)) from None
    base = sweep.base if sweep.base.is_absolute() else (path.parent / sweep.base)
    if not base.is_file():
        raise ConfigError(str(path), [f"base: no such file: {base}"])
    sweep.base = base.resolve()
    if quick:
        q = sweep.quick
        sweep.overrides = sweep.overrides + q.overrides
        sweep.seeds = q.seeds or sweep.seeds
        sweep.evaluations = q.evaluations or sweep.evaluations
        if q.grid:
            unknown = sorted(set(q.grid) - set(sweep.grid))
            if unknown:
                raise ConfigError(str(path), [f"quick.grid: {', '.join(unknown)}: not an axis of `grid:` "
                                              f"({', '.join(sweep.grid) or 'none'})"])
            for key, values in q.grid.items():
                old = sweep.grid[key]
                if isinstance(old, dict) and isinstance(values, list) and all(isinstance(v, str) for v in values):
                    missing = [v for v in values if v not in old]
                    if missing:
                        raise ConfigError(str(path), [f"quick.grid.{key}: {', '.join(missing)}: not a label of "
                                                      f"grid.{key} ({', '.join(old)})"])
                    values = {v: old[v] for v in values}  # a list of labels picks those values
                sweep.grid = {**sweep.grid, key: values}
    return sweep, path.parent.resolve()


def _grid_points(grid: dict[str, list[Any] | dict[str, Any]]) -> list[dict[str, tuple[str, Any]]]:
    """Cartesian product; each entry maps key -> (label, value)."""
    axes = []
    for key, values in grid.items():
        items = list(values.items()) if isinstance(values, dict) else [(_label(v), v) for v in values]
        axes.append([(key, label, value) for label, value in items])
    return [{k: (label, v) for k, label, v in combo} for combo in itertools.product(*axes)] or [{}]


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def plan_trials(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every trial: resolved config (as a dict), labels, seed and hash. Validates each config.

    Order: base config, the sweep's ``evaluations``, the grid point, then ``overrides`` (so that
    ``stages.*.epochs=1`` reaches stages a grid point set). A grid axis named ``_name`` is a bundle:
    each of its (labelled) values is a mapping ``{dotted key: value}`` applied together, e.g. a dataset
    split with the evaluator suite that scores it."""
    trials = []
    base = read_yaml(sweep.base)
    for point in _grid_points(sweep.grid):
        labels = {grid_label(k): v[0] for k, v in point.items()}
        for seed in sweep.seeds:
            data = json.loads(json.dumps(base))  # deep copy of plain YAML data
            data["evaluations"] = {k: v.model_dump() for k, v in sweep.evaluations.items()}
            for key, (label, value) in point.items():
                if key.startswith("_"):
                    if not isinstance(value, dict):
                        raise ConfigError(f"grid.{key}", [f"{label}: a bundle axis ('_' prefix) takes mappings "
                                                          f"of dotted keys to values, got {type(value).__name__}"])
                    for sub, v in value.items():
                        set_dotted(data, sub, json.loads(json.dumps(v)))
                else:
                    set_dotted(data, key, json.loads(json.dumps(value)))
            try:  # after the grid point, so that e.g. `stages.*.epochs=1` reaches gridded stages
                data = apply_sweep_overrides(data, sweep.overrides)
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                raise ConfigError("sweep overrides", [f"{sweep.overrides}: {type(exc).__name__}: {exc}"]) from None
            data.setdefault("run", {})["seed"] = seed
            data.setdefault("trainer", {})["num_workers"] = 0  # a trial is one in-process Ray task
            data["trainer"]["progress"] = False
            cfg = validate_config(data, source=f"trial {labels} seed {seed}")
            blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
            trial_hash = hashlib.sha256(blob.encode()).hexdigest()[:12]
            trials.append({"trial": trial_hash, "seed": seed, "config": cfg.model_dump(mode="json"),
                           "labels": labels})
    return trials


