"""Zero-shot (k = 0) scores (proposal §2.4.1): no label is used to fit anything.

(a) **Molecule -> profile retrieval on held-out compounds** (CLOOME's protocol). The run's dataset
is re-created from the plan with ``include_splits: [test]``; with ``split: {by: compound}`` these
compounds are unseen by pretraining (which uses ``include_splits: [train, val]``, and the leakage
guard drops them otherwise). Every held-out well is built into its experiment graph exactly as in
pretraining. Each compound is embedded at the molecule level and each well's profile at the cell
level, treated state (:mod:`cgc_framework.engine.pretrained`); scores are cosine similarities, in two
spaces: ``contrast`` (through the contrast task's projection heads, the space the InfoNCE loss
aligns; only when the run has a ``contrast`` task) and ``encoder`` (the raw ``hidden_dim``
embeddings). ``molecule_to_profile``: for each compound, is one of its own wells among the top k
of all held-out wells? ``profile_to_molecule``: for each well, is its compound among the top k of
all held-out compounds (scikit-learn ``top_k_accuracy_score``)? Each beside the chance rate
(``1 - C(N - m, k) / C(N, k)`` for a compound with ``m`` of ``N`` wells, averaged; ``k / n`` for
``n`` compounds) and the same model untrained (weights drawn under the run's seed). Ties count
against the query (a negative scoring equal to the best positive ranks above it).

(b) **Predicted response magnitude as a label-free toxicity score.** For every compound of the
dataset (all splits; the held-out ones flagged), the causal head predicts the treated state of the
compound's plate control state at the highest dose in the data, ``D``; the score is the L2 norm
of the predicted change over every cell node and feature, ``||y^ - x||_2`` (robust-z units of the
profile features). Scored by AUROC/AUPRC (scikit-learn, :mod:`cgc_framework.plugin.metrics`) against the
toxicity labels of the compounds found, by InChIKey connectivity block, in MoleculeNet Tox21 /
ClinTox (``CT_TOX``) / SIDER / ToxCast (DeepChem loaders, all splits), per task; tasks with fewer
than ``min_labelled`` matched compounds or one class are listed, not scored. Beside: the untrained
model's predicted magnitude; the *measured* magnitude ``||y - x||_2`` of the compound's own well at
its highest measured dose (not a prediction: the observed response the head learns from); and two
fingerprint-free descriptors, Crippen logP and molecular weight (RDKit).

Tables: ``retrieval`` (method x space x direction x k), ``toxicity`` (subset x set x task x
score), ``compounds`` (one row per compound: split, scores, descriptors), ``leakage`` (held-out
compounds the pretraining corpus contained).
"""

from __future__ import annotations

from math import comb
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import top_k_accuracy_score
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from cgc_framework.plugin import (
    EvaluationContext,
    EvaluationResult,
    Evaluator,
    HeldOutMolecules,
    Pretrained,
    Record,
    SkipLog,
)
from cgc_framework.plugin.metrics import SingleClassError, classification_metrics
from cgc_framework.plugin.roles import CELL_STATE

from .common import dataset_with_splits, guard_note, held_out, inchikey14, pretraining_inchikeys
from .molnet import load_molnet, molnet_data_files
from .params import TOXICITY_SETS as TOXICITY_SETS
from .params import ZeroShotParams
from .responses import build_experiment_graphs, causal_task_key, predict_treated

NON_TOXICITY_TASKS = frozenset({"FDA_APPROVED"})  # ClinTox: approval is not a toxicity label
SCORES = ("predicted_magnitude", "untrained_predicted_magnitude", "measured_magnitude", "logp", "mol_weight")


# -- retrieval metrics ----------------------------------------------------------------------------


def topk_any_positive(scores: np.ndarray, positives: np.ndarray, ks: list[int]) -> dict[int, float]:
    """Fraction of queries with a positive among their top k.

    Args:
        scores: ``[Q, G]`` similarity of each query to each gallery item (higher = closer).
        positives: ``[Q, G]`` bool, at least one True per row.
    Returns: ``{k: accuracy}``. The rank of a query is the number of negatives scoring ``>=`` its
    best positive (ties count against it), a hit at k when that number is ``< k``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if not positives.any(axis=1).all():
        raise ValueError("every query needs at least one positive")
    best = np.where(positives, scores, -np.inf).max(axis=1, keepdims=True)  # [Q, 1]
    rank = ((scores >= best) & ~positives).sum(axis=1)  # [Q]
    return {k: float((rank < k).mean()) for k in ks}


def chance_any_positive(n_positives: np.ndarray, n_gallery: int, k: int) -> float:
    """Expected top-k accuracy of a random ranking: mean over queries of ``1 - C(N-m, k) / C(N, k)``."""
    k = min(k, n_gallery)
    return float(np.mean([1 - comb(n_gallery - int(m), k) / comb(n_gallery, k) for m in n_positives]))


# -- helpers -------------------------------------------------------------------------------------


def _split_by(plan: Any) -> str | None:
    split = getattr(plan.dataset_spec.params, "split", None)
    return getattr(split, "by", None)


def _build(ctx: EvaluationContext, records: list[Record]) -> tuple[list[HeteroData], list[Record], list[str]]:
    """Experiment graphs of ``records`` as pretraining builds them; rejected ones as ``"id: reason"``."""
    graphs, kept, skips = build_experiment_graphs(ctx, records)
    return graphs, kept, [f"{e.record_id}: {e.reason}" for e in skips.entries]


def _task_key(plan: Any, name: str) -> str | None:
    return next((k for k, s in plan.tasks.items() if s.info.name == name), None)


def _cell_types(pre: Pretrained) -> list[str]:
    return list(pre.schema.roles.cell_state)


def _per_graph_sq(values: dict[str, Tensor], batch: HeteroData) -> Tensor:
    """``[B]``: per graph, the sum over cell nodes and features of ``values[t] ** 2``."""
    total = torch.zeros(batch.num_graphs, dtype=torch.float64)
    for t, v in values.items():
        b = batch[t].get("batch")
        if b is None:
            b = torch.zeros(v.size(0), dtype=torch.long)
        sq = torch.nan_to_num(v.double()).pow(2).sum(-1)  # [N_t]
        total += scatter(sq.cpu(), b.cpu(), dim=0, dim_size=batch.num_graphs, reduce="sum")
    return total


def predicted_magnitude(pre: Pretrained, causal_key: str, graphs: list[HeteroData], batch_size: int = 64) -> np.ndarray:
    """``[len(graphs)]``: ``||y^ - x||_2`` over the cell nodes of each graph (causal head, eval mode;
    the predictions of :func:`~.responses.predict_treated`, NaN entries of ``x`` ignored)."""
    preds = predict_treated(pre.model, causal_key, graphs, pre.device, batch_size)
    return np.array([np.sqrt(sum(np.nansum((p[t].astype(np.float64) - g[t].x.double().numpy()) ** 2)
                                 for t in p)) for p, g in zip(preds, graphs)])


def measured_magnitude(graphs: list[HeteroData], cell_types: list[str]) -> np.ndarray:
    """``[len(graphs)]``: ``||y - x||_2`` over the cell nodes of each graph (the measured change)."""
    out = []
    for batch in DataLoader(graphs, batch_size=256):
        out.append(_per_graph_sq({t: batch[t].y - batch[t].x for t in cell_types
                                  if t in batch.node_types and batch[t].get("y") is not None}, batch).sqrt())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _descriptors(smiles: str) -> tuple[float, float]:
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors

    mol = Chem.MolFromSmiles(smiles)
    return (float(Crippen.MolLogP(mol)), float(Descriptors.MolWt(mol))) if mol is not None else (np.nan, np.nan)


# -- the evaluator -------------------------------------------------------------------------------


class ZeroShotEvaluator(Evaluator):
    def __init__(self, params: ZeroShotParams | None = None):
        self.params = params or ZeroShotParams()

    def data_files(self) -> dict[str, list[Path]]:
        return molnet_data_files(self.params.model_dump())

    def held_out_molecules(self, plan: Any) -> HeldOutMolecules | None:
        """The compounds of the dataset's test split, when it is split by compound and pretraining
        would otherwise read them (``test`` in ``include_splits``); else none (the split holds them out)."""
        if not self.params.retrieval or _split_by(plan) != "compound":
            return None
        if "test" not in getattr(plan.dataset_spec.params, "include_splits", []):
            return None
        records = dataset_with_splits(plan, ["test"]).records(SkipLog())
        return held_out((inchikey14(r.fields.get("smiles")), "compound test split of the run's dataset")
                        for r in records)

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        notes: list[str] = []
        tables: dict[str, pd.DataFrame] = {}
        pre = ctx.pretrained()
        untrained = ctx.pretrained(untrained=True)
        seen = pretraining_inchikeys(ctx.plan)
        text = []
        if p.retrieval:
            ret, leak, ret_notes, md = self._retrieval(ctx, pre, untrained, seen)
            notes += ret_notes
            if ret is not None:
                tables["retrieval"], tables["leakage"] = ret, leak
            text.append(md)
        if p.toxicity:
            tox, comp, tox_notes, md = self._toxicity(ctx, pre, untrained)
            notes += tox_notes
            if comp is not None:
                tables["toxicity"], tables["compounds"] = tox, comp
            text.append(md)
        if notes:
            text.append("Notes: " + "; ".join(dict.fromkeys(notes)))
        return EvaluationResult(tables, "\n\n".join(t for t in text if t))

    # (a) ----------------------------------------------------------------------------------------

    def _retrieval(self, ctx: EvaluationContext, pre: Pretrained, untrained: Pretrained, seen: set[str]):
        p, plan = self.params, ctx.plan
        by = _split_by(plan)
        if by is None:
            return None, None, [], "Retrieval skipped: the dataset has no split parameters."
        if by != "compound":
            return None, None, [], (f"Retrieval skipped: the dataset is split by '{by}', so no compound is "
                                    f"held out; set `data.dataset.params.split.by: compound`.")
        records = list(dataset_with_splits(plan, ["test"]).records(SkipLog()))
        if p.max_profiles and len(records) > p.max_profiles:
            idx = np.sort(np.random.default_rng(ctx.seed).choice(len(records), p.max_profiles, replace=False))
            records = [records[i] for i in idx]
        graphs, records, rejected = _build(ctx, records)
        notes = [f"{len(rejected)} held-out wells rejected by the graph builders (e.g. {rejected[0]})"] \
            if rejected else []
        compounds = list(dict.fromkeys(str(r.fields["compound_id"]) for r in records))
        if len(compounds) < 2:
            return None, None, notes, (f"Retrieval skipped: {len(compounds)} held-out compound(s) in the test "
                                       f"split; raise `split.test_fraction`.")
        col = {c: i for i, c in enumerate(compounds)}
        well_comp = np.array([col[str(r.fields["compound_id"])] for r in records])  # [N]
        first = [int(np.flatnonzero(well_comp == i)[0]) for i in range(len(compounds))]
        positives = well_comp[None, :] == np.arange(len(compounds))[:, None]  # [C, N]
        n_pos = positives.sum(1)
        contrast_key = _task_key(plan, "contrast")
        rows = []
        for method, model in (("pretrained", pre), ("untrained", untrained)):
            zm = model.embed_graphs([graphs[i] for i in first], "molecule")  # [C, H]
            zc = model.embed_graphs(graphs, "cell", state="treated")  # [N, H]
            spaces = {"encoder": (zm, zc)}
            if contrast_key is not None:
                task = model.model.tasks[contrast_key]
                with torch.no_grad():
                    spaces["contrast"] = (task.mol_proj(zm.to(model.device)).cpu(),
                                          task.cell_proj(zc.to(model.device)).cpu())
            for space, (a, b) in spaces.items():
                sim = (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()).double().numpy()  # [C, N]
                m2p = topk_any_positive(sim, positives, p.top_k)
                for k in p.top_k:
                    rows.append({"method": method, "space": space, "direction": "molecule_to_profile", "k": k,
                                 "accuracy": m2p[k], "chance": chance_any_positive(n_pos, len(records), k),
                                 "queries": len(compounds), "gallery": len(records)})
                    acc = top_k_accuracy_score(well_comp, sim.T, k=k, labels=np.arange(len(compounds))) \
                        if 2 < len(compounds) > k else topk_any_positive(sim.T, positives.T, [k])[k]
                    rows.append({"method": method, "space": space, "direction": "profile_to_molecule", "k": k,
                                 "accuracy": float(acc), "chance": min(k, len(compounds)) / len(compounds),
                                 "queries": len(records), "gallery": len(compounds)})
        table = pd.DataFrame(rows)
        smiles = {str(r.fields["compound_id"]): r.fields.get("smiles") for r in records}
        n_seen = sum(inchikey14(s) in seen for s in smiles.values())
        leak = pd.DataFrame([{"dataset": plan.dataset_spec.info.name, "split": "test (compounds)",
                              "molecules": len(smiles), "seen_in_pretraining": n_seen}])
        md = [f"Molecule <-> profile retrieval on the held-out compounds (test split by compound): "
              f"{len(compounds)} compounds, {len(records)} wells; top-k accuracy (chance):", "",
              "| method | space | direction | " + " | ".join(f"top-{k}" for k in p.top_k) + " |",
              "|---|---|---|" + "---|" * len(p.top_k)]
        for (method, space, direction), df in table.groupby(["method", "space", "direction"], sort=False):
            cells = [f"{r.accuracy:.3f} ({r.chance:.3f})" for r in df.sort_values("k").itertuples()]
            md.append(f"| {method} | {space} | {direction} | " + " | ".join(cells) + " |")
        md += ["", f"Held-out compounds the pretraining corpus contained (InChIKey connectivity match): "
                   f"{n_seen}/{len(smiles)}. " + guard_note(plan)]
        if contrast_key is None:
            md.append("The run has no contrast task: only the encoder space, which no loss aligns.")
        return table, leak, notes, "\n".join(md)

    # (b) ----------------------------------------------------------------------------------------

    def _toxicity(self, ctx: EvaluationContext, pre: Pretrained, untrained: Pretrained):
        p, plan = self.params, ctx.plan
        try:
            causal_key = causal_task_key(ctx.model)
        except ValueError:
            return None, None, [], "Response-magnitude toxicity score skipped: the run has no causal task."
        try:
            records = list(dataset_with_splits(plan, ["train", "val", "test"]).records(SkipLog()))
        except ValueError as exc:
            return None, None, [], f"Response-magnitude toxicity score skipped: {exc}."
        doses = [r.fields.get("dose_um") for r in records if r.fields.get("dose_um") is not None]
        cells = plan.modality_with_role(CELL_STATE)
        field = cells.modality.record_field if cells is not None else None
        if not doses or field is None or not any(r.fields.get(field) is not None for r in records):
            return None, None, [], "Response-magnitude toxicity score skipped: the records carry no dose or profile."
        top = float(max(doses))
        by_comp: dict[str, list[Record]] = {}
        for r in records:
            if r.fields.get("smiles"):
                by_comp.setdefault(str(r.fields["compound_id"]), []).append(r)
        probes, measured_recs, ids = [], [], []
        for cid, recs in by_comp.items():
            r0 = recs[0]
            prof = r0.fields["cell_profile"]
            control = np.asarray(prof.control)
            probe = type(prof)(prof.features, control.copy(), control, top, prof.plate)  # treated unused by predict
            probes.append(Record(f"{cid}@{top:g}uM", {**r0.fields, "dose_um": top, "cell_profile": probe}))
            measured_recs.append(max(recs, key=lambda r: r.fields.get("dose_um") or 0.0))
            ids.append(cid)
        g_probe, kept, rejected = _build(ctx, probes)
        g_meas, kept_m, _ = _build(ctx, measured_recs)
        keep = {r.id.rsplit("@", 1)[0] for r in kept} & {str(r.fields["compound_id"]) for r in kept_m}
        sel = [i for i, c in enumerate(ids) if c in keep]
        gi = {r.id.rsplit("@", 1)[0]: g for r, g in zip(kept, g_probe)}
        gm = {str(r.fields["compound_id"]): (r, g) for r, g in zip(kept_m, g_meas)}
        probes_g = [gi[ids[i]] for i in sel]
        cell = _cell_types(pre)
        pred = predicted_magnitude(pre, causal_key, probes_g, p.batch_size)
        pred_u = predicted_magnitude(untrained, causal_key, probes_g, p.batch_size)
        meas = measured_magnitude([gm[ids[i]][1] for i in sel], cell)
        test_ids = {str(r.fields["compound_id"]) for r in records if r.fields.get("split") == "test"}
        rows = []
        for j, i in enumerate(sel):
            cid = ids[i]
            r0 = by_comp[cid][0]
            logp, mw = _descriptors(r0.fields["smiles"])
            rows.append({"compound_id": cid, "compound_name": r0.fields.get("compound_name"),
                         "smiles": r0.fields["smiles"], "inchikey14": inchikey14(r0.fields["smiles"]),
                         "split": "test" if cid in test_ids else "train/val", "top_dose_um": top,
                         "predicted_magnitude": float(pred[j]), "untrained_predicted_magnitude": float(pred_u[j]),
                         "measured_magnitude": float(meas[j]),
                         "measured_dose_um": gm[cid][0].fields.get("dose_um"), "logp": logp, "mol_weight": mw})
        comp = pd.DataFrame(rows)
        if comp.empty:
            return None, None, rejected[:3], "Response-magnitude toxicity score skipped: no compound could be built."
        notes = [f"{len(rejected)} compounds' top-dose graphs rejected by the builders (e.g. {rejected[0]})"] \
            if rejected else []
        tox_rows, matched = [], {}
        for name in p.toxicity_sets:
            try:
                ds = load_molnet(name, p.data_dir)
            except Exception as exc:  # noqa: BLE001 - offline without data_dir, missing file
                notes.append(f"{name}: labels not loaded ({type(exc).__name__}: {str(exc)[:120]})")
                continue
            labels = _labels_by_key(ds)
            key_rows = comp.inchikey14.map(labels.get)
            hit = key_rows.notna().to_numpy()
            matched[name] = int(hit.sum())
            for t, task in enumerate(ds.tasks):
                if task in NON_TOXICITY_TASKS:
                    continue
                for subset in ("all", "held_out"):
                    mask = hit & (comp.split.eq("test").to_numpy() if subset == "held_out" else True)
                    idx = [i for i in np.flatnonzero(mask) if key_rows.iloc[i][1][t]]
                    y = np.array([key_rows.iloc[i][0][t] for i in idx], dtype=int)
                    base = {"subset": subset, "dataset": name, "task": task, "n": len(idx), "n_positive": int(y.sum())}
                    few = min(int(y.sum()), len(y) - int(y.sum()))
                    if len(idx) < p.min_labelled or few < p.min_per_class:
                        why = (f"{len(idx)} matched labelled compounds < min_labelled {p.min_labelled}"
                               if len(idx) < p.min_labelled else
                               f"{few} compounds of the rarer class < min_per_class {p.min_per_class}")
                        tox_rows.append({**base, "score": "-", "auroc": np.nan, "auprc": np.nan, "skipped": why})
                        continue
                    for score in SCORES:
                        s = comp[score].to_numpy()[idx]
                        ok = np.isfinite(s)
                        try:
                            m = classification_metrics(y[ok], s[ok])
                        except SingleClassError:
                            tox_rows.append({**base, "score": score, "auroc": np.nan, "auprc": np.nan,
                                             "skipped": "one class among the matched compounds"})
                            break
                        tox_rows.append({**base, "score": score, "auroc": m["auroc"], "auprc": m["auprc"],
                                         "skipped": ""})
        tox = pd.DataFrame(tox_rows, columns=["subset", "dataset", "task", "n", "n_positive", "score", "auroc",
                                              "auprc", "skipped"])
        return tox, comp, notes, _tox_summary(tox, comp, matched, top, p)


def _labels_by_key(ds) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """InChIKey14 -> (labels ``[T]``, present ``[T]``) over every split (first occurrence kept)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in (ds.train, ds.valid, ds.test):
        for s, y, w in zip(split.smiles, split.y, split.present):
            k = inchikey14(str(s))
            if k is not None and k not in out:
                out[k] = (y, w)
    return out


def _tox_summary(tox: pd.DataFrame, comp: pd.DataFrame, matched: dict[str, int], top: float,
                 p: ZeroShotParams) -> str:
    paras = [f"Predicted response magnitude at the top dose ({top:g} uM, plate control state) for "
             f"{len(comp)} compounds ({int(comp.split.eq('test').sum())} held out): mean "
             f"{comp.predicted_magnitude.mean():.3g} (untrained model {comp.untrained_predicted_magnitude.mean():.3g}; "
             f"measured at each compound's highest dose {comp.measured_magnitude.mean():.3g}); Spearman "
             f"predicted vs measured {comp.predicted_magnitude.corr(comp.measured_magnitude, method='spearman'):.3f}."]
    if not p.toxicity_sets:
        return paras[0] + " No toxicity labels configured (`toxicity_sets: []`)."
    paras.append("Compounds matched to MoleculeNet by InChIKey connectivity block: "
                 + ", ".join(f"{k} {v}/{len(comp)}" for k, v in matched.items()) + ".")
    scored = tox[tox.skipped.eq("") & tox.score.ne("-")]
    if scored.empty:
        paras.append(f"No task had at least {p.min_labelled} matched labelled compounds with "
                     f"{p.min_per_class} of each class: no AUROC reported.")
        return "\n\n".join(paras)
    wide = scored.pivot_table(index=["subset", "dataset"], columns="score", values="auroc", aggfunc="mean")
    ntask = scored.groupby(["subset", "dataset"]).task.nunique()
    cols = [s for s in SCORES if s in wide.columns]
    lines = ["AUROC of each label-free score, macro over the scored tasks (`all`: every matched compound, "
             "including those whose responses pretraining saw; `held_out`: the test-split compounds only):", "",
             "| subset | set | tasks | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for (subset, ds), row in wide.iterrows():
        lines.append(f"| {subset} | {ds} | {ntask[(subset, ds)]} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    paras.append("\n".join(lines))
    skipped = tox[tox.skipped.ne("")]
    if len(skipped):
        paras.append(f"{skipped[['subset', 'dataset', 'task']].drop_duplicates().shape[0]} (subset, task) pairs "
                     f"not scored (too few matched labelled compounds or one class; see `toxicity.csv`).")
    return "\n\n".join(paras)
