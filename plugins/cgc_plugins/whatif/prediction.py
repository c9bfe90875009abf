"""The answer of a what-if: :class:`Prediction` (tables, JSON, plots, ``summary.md``) and the
errors a what-if raises. How the numbers are made: :mod:`cgc_plugins.whatif.predictor`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgc_framework.plugin import CGCError

COMPOUND_FIELDS = ("smiles", "compound_id", "compound_name", "inchikey", "moa", "target")
"""Record fields that describe the compound of an experiment (``docs/graph-conventions.md``);
replaced by the query's in a what-if record."""

RANK_BY = ("predicted", "centered", "measured")
"""Similarities the nearest known compounds can be ranked by (see :meth:`WhatIf.predict`)."""

class PredictionError(CGCError, ValueError):
    """A what-if input is invalid (SMILES, dose, context) or the checkpoint cannot answer it."""


class UnknownContextError(PredictionError):
    """The requested cell context is not in the checkpoint's data; ``available`` lists those that are."""

    def __init__(self, message: str, available: list[str]):
        self.available = available
        super().__init__(message)


@dataclass(frozen=True)
class CellContext:
    """One plate of the data: the control state a what-if starts from.

    Attributes:
        plate: the ``plate`` record field (the context's name).
        cell_line: the plate's ``cell_line`` field (``None`` if the data has none).
        records: number of treated-well records of the plate in the data (as read, ``max_records``).
        compounds: number of distinct compounds measured on the plate.
    """

    plate: str
    cell_line: str | None
    records: int
    compounds: int

    @property
    def label(self) -> str:
        return f"{self.plate} ({self.cell_line})" if self.cell_line else self.plate


@dataclass
class Prediction:
    """The answer to one what-if (see the module docstring for every column).

    Attributes:
        smiles: the query SMILES, in input order (duplicates removed).
        doses_um: the query doses in uM, ascending (duplicates removed).
        context: the cell context the predictions start from.
        changes: tidy ``DataFrame``, one row per (SMILES, dose, measured cell feature):
            ``smiles, dose_um, node_type, node, <label columns>, slot, feature, control, predicted,
            change`` (``change = predicted - control``, feature units).
        dose_response: one row per (SMILES, dose): ``n_features, l2, rms, max_abs, l2_<group>...``.
        nearest: per (SMILES, dose) the ``top_k`` known compounds by ``cosine_predicted``:
            ``smiles, dose_um, rank, compound_id, compound_name, moa, target, cosine_predicted,
            cosine_centered, cosine_measured, measured_dose_um, same_smiles``.
        label_columns: the node-label columns of ``changes`` (e.g. ``compartment``, ``channel``).
        meta: checkpoint, task, context, dose anchors, counts, warnings (what ``prediction.json`` holds).
    """

    smiles: list[str]
    doses_um: list[float]
    context: CellContext
    changes: pd.DataFrame
    dose_response: pd.DataFrame
    nearest: pd.DataFrame
    label_columns: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return list(self.meta.get("warnings", []))

    def top_features(self, n: int = 10, by: str | None = None) -> pd.DataFrame:
        """The ``n`` features with the largest ``|change|`` per (SMILES, dose), or per (SMILES,
        dose, group) with ``by`` a label column (``"compartment"``, ``"channel"``). Ranks are
        1-based; ties are broken by feature name, so the ranking is deterministic."""
        keys = ["smiles", "dose_um"]
        df = self.changes
        if by is not None:
            if by not in self.label_columns:
                raise PredictionError(f"top_features(by={by!r}): not a label column; choose one of "
                                      f"{', '.join(self.label_columns) or '(none)'}")
            df = df[df[by].notna()]
            keys = keys + [by]
        df = df.assign(abs_change=df["change"].abs(), _order=pd.Categorical(df["smiles"], self.smiles))
        df = df.sort_values(["_order", "dose_um"] + keys[2:] + ["abs_change", "feature"],
                            ascending=[True, True] + [True] * (len(keys) - 2) + [False, True], kind="mergesort")
        top = df.groupby(keys, sort=False, observed=True).head(n).copy()
        top["rank"] = top.groupby(keys, sort=False, observed=True).cumcount() + 1
        cols = keys + ["rank", "feature", "node_type"] + [c for c in self.label_columns if c not in keys] \
            + ["slot", "control", "predicted", "change"]
        return top[cols].reset_index(drop=True)

    def write(self, out_dir: str | Path, *, top: int = 10) -> dict[str, Path]:
        """Write every table (CSV; ``changes`` also as Parquet), ``prediction.json``, the plots
        ``dose_response.png`` and ``top_changes_<k>.png`` (k = SMILES index) and ``summary.md``
        into ``out_dir``; returns ``{name: path}``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}

        def save(name: str, df: pd.DataFrame) -> None:
            files[name] = out / f"{name}.csv"
            df.to_csv(files[name], index=False)

        save("changes", self.changes)
        files["changes_parquet"] = out / "changes.parquet"
        self.changes.to_parquet(files["changes_parquet"], index=False)
        save("dose_response", self.dose_response)
        save("nearest_compounds", self.nearest)
        save("top_features", self.top_features(top))
        for col in self.label_columns:
            save(f"top_by_{col}", self.top_features(top, by=col))
        files["dose_response_png"] = plot_dose_response(self, out / "dose_response.png")
        for k, smi in enumerate(self.smiles):
            files[f"top_changes_{k}_png"] = plot_top_changes(self, smi, out / f"top_changes_{k}.png", n=top)
        files["json"] = out / "prediction.json"
        files["json"].write_text(json.dumps(self.to_json(top=top), indent=2, default=_json_default))
        files["summary"] = out / "summary.md"
        files["summary"].write_text(self.summary_markdown(top=min(top, 5)))
        return files

    def to_json(self, *, top: int = 10) -> dict[str, Any]:
        """Metadata, dose-response, top features and nearest compounds as plain JSON types."""
        return {"meta": self.meta, "smiles": self.smiles, "doses_um": self.doses_um,
                "context": {"plate": self.context.plate, "cell_line": self.context.cell_line,
                            "records": self.context.records, "compounds": self.context.compounds},
                "dose_response": _records(self.dose_response),
                "top_features": _records(self.top_features(top)),
                "nearest_compounds": _records(self.nearest)}

    def summary_markdown(self, *, top: int = 5) -> str:
        """A short human-readable report of the what-if."""
        m = self.meta
        lines = [f"# What-if: {len(self.smiles)} compound(s) x {len(self.doses_um)} dose(s) on "
                 f"{self.context.label}", "",
                 f"- checkpoint: `{m['checkpoint']}` (stage `{m.get('stage')}`, step {m.get('global_step')}); "
                 f"causal task `{m['task']}`",
                 f"- cell context: plate `{self.context.plate}`"
                 + (f", cell line `{self.context.cell_line}`" if self.context.cell_line else "")
                 + f"; control state = the plate's control summary ({self.context.records} treated-well "
                   f"records, {self.context.compounds} compounds measured on it)",
                 f"- features: {m['n_features']} measured cell-node features "
                 f"({', '.join(f'{k}: {v}' for k, v in m['features_per_node_type'].items())}); "
                 f"units: {m['units'] or 'as the features'}",
                 f"- reference set: {m['known_compounds']} known compounds of the data, predicted in the "
                 f"same context at each dose", ""]
        if self.warnings:
            lines += ["**Warnings**", ""] + [f"- {w}" for w in self.warnings] + [""]
        lines += ["Change = predicted treated state - control state of each cell-node feature. "
                  "Magnitude `l2` is the L2 norm of the change over all measured features, `rms` = "
                  "l2 / sqrt(n).", ""]
        for k, smi in enumerate(self.smiles):
            dr = self.dose_response[self.dose_response.smiles == smi]
            groups = [c for c in dr.columns if c.startswith("l2_compartment_")]
            lines += [f"## `{smi}`", "", "| dose (uM) | l2 | rms | max abs | "
                      + " | ".join(g.removeprefix("l2_") for g in groups) + " |",
                      "|---|---|---|---|" + "---|" * len(groups)]
            for _, r in dr.iterrows():
                lines.append(f"| {r.dose_um:g} | {r.l2:.3f} | {r.rms:.3f} | {r.max_abs:.3f} | "
                             + " | ".join(f"{r[g]:.3f}" for g in groups) + " |")
            hi = max(self.doses_um)
            tf = self.top_features(top)
            tf = tf[(tf.smiles == smi) & (tf.dose_um == hi)]
            lines += ["", f"Top changed features at {hi:g} uM: "
                      + ", ".join(f"`{r.feature}` {r.change:+.3f}" for _, r in tf.iterrows()), ""]
            nn = self.nearest[(self.nearest.smiles == smi) & (self.nearest.dose_um == hi)].head(top)
            if len(nn):
                lines += [f"Nearest known compounds at {hi:g} uM (ranked by {m.get('nearest_ranked_by')} cosine):",
                          "", "| rank | compound | MoA | cosine (predicted) | cosine (centered) "
                              "| cosine (measured) |",
                          "|---|---|---|---|---|---|"]
                for _, r in nn.iterrows():
                    name = _md(r.compound_name if isinstance(r.compound_name, str) else r.compound_id)
                    moa = _md(r.moa) if isinstance(r.moa, str) else "-"
                    meas = "-" if pd.isna(r.cosine_measured) else f"{r.cosine_measured:.3f}"
                    lines.append(f"| {r['rank']} | {name} | {moa} | {r.cosine_predicted:.3f} | "
                                 f"{r.cosine_centered:.3f} | {meas} |")
            lines += ["", f"![top changes](top_changes_{k}.png)", ""]
        lines += ["![dose-response](dose_response.png)", "",
                  "Files: `changes.csv`/`.parquet` (every feature), `dose_response.csv`, `top_features.csv`, "
                  + ", ".join(f"`top_by_{c}.csv`" for c in self.label_columns)
                  + ", `nearest_compounds.csv`, `prediction.json`. "
                    "See `docs/predict.md` for what the numbers mean.",
                  ""]
        return "\n".join(lines)



def _md(text: str) -> str:
    """Safe inside a Markdown table cell (MoAs and targets are ``|``-separated)."""
    return str(text).replace("|", "; ")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


# -- plots --------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_dose_response(pred: Prediction, path: str | Path) -> Path:
    """``path`` (PNG): response magnitude (L2 of the change) vs dose per SMILES, and per compartment."""
    plt = _plt()
    dr = pred.dose_response
    comp_cols = [c for c in dr.columns if c.startswith("l2_compartment_")]
    ncols = 2 if comp_cols else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols + (3 if comp_cols else 0), 4), squeeze=False)
    ax = axes[0, 0]
    for k, smi in enumerate(pred.smiles):
        d = dr[dr.smiles == smi]
        ax.plot(d.dose_um, d.l2, marker="o", label=_short(smi, k))
    ax.set_xscale("log")
    ax.set_xlabel("dose (uM)")
    ax.set_ylabel(f"L2 of predicted change ({pred.meta.get('n_features')} features)")
    ax.set_title(f"predicted dose-response on {pred.context.label}", fontsize=10)
    anchors = pred.meta.get("dose_anchors_um")
    if anchors:
        for a, label in ((anchors[0], "range of the dose anchors"), (anchors[-1], None)):
            ax.axvline(a, color="0.6", ls=":", lw=1, label=label)
    ax.legend(fontsize=7)
    if comp_cols:
        ax = axes[0, 1]
        styles = ["-", "--", ":", "-."]
        for k, smi in enumerate(pred.smiles):
            d = dr[dr.smiles == smi]
            for j, c in enumerate(comp_cols):
                ax.plot(d.dose_um, d[c], styles[j % len(styles)], marker=".", color=f"C{k % 10}",
                        label=f"{_short(smi, k)}: {c.removeprefix('l2_compartment_')}")
        ax.set_xscale("log")
        ax.set_xlabel("dose (uM)")
        ax.set_ylabel("L2 of predicted change")
        ax.set_title("per compartment", fontsize=10)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_top_changes(pred: Prediction, smiles: str, path: str | Path, *, n: int = 10) -> Path:
    """``path`` (PNG): the ``n`` largest predicted changes of ``smiles`` at its highest dose."""
    plt = _plt()
    hi = max(pred.doses_um)
    tf = pred.top_features(n)
    tf = tf[(tf.smiles == smiles) & (tf.dose_um == hi)].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(tf), 3) + 1.2))
    ax.barh(tf.feature, tf.change, color=["C3" if v > 0 else "C0" for v in tf.change])
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(f"predicted change ({pred.meta.get('units') or 'feature units'})")
    ax.set_title(f"{_short(smiles, pred.smiles.index(smiles), 60)} at {hi:g} uM on {pred.context.label}",
                 fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _short(smiles: str, k: int, width: int = 28) -> str:
    return f"[{k}] " + (smiles if len(smiles) <= width else smiles[: width - 1] + "…")


__all__ = ["COMPOUND_FIELDS", "CellContext", "Prediction", "PredictionError", "UnknownContextError",
           "plot_dose_response", "plot_top_changes"]

