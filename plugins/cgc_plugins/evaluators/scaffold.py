"""Full-data scaffold-split benchmark (Hu et al. 2020 protocol) beside the literature.

For each MoleculeNet classification set (DeepChem scaffold split 80/10/10):

- ``linear_probe``: frozen molecule-level embeddings (:mod:`cgc_framework.engine.pretrained`) of the
  pretrained (and the untrained) encoder + logistic regression per task on the whole training split;
- ``finetune``: the encoder plus a linear head on the mean atom embedding ++ the compound-node
  embedding, trained end to end on all tasks (masked binary
  cross-entropy over labelled entries, Adam), initialised from the pretrained weights
  (``pretrained``) or from scratch (``scratch``: the "same encoder trained from scratch on the
  labels" baseline); the test ROC-AUC of the epoch with the best validation ROC-AUC is reported,
  and each epoch's training loss and validation ROC-AUC go to ``finetune_curve.csv`` as it ends;
- ``finetune_lp``: the same fine-tuning, but the head starts from the linear probe of the head's
  input (per-task logistic regression on the frozen encoder's features, standardisation folded into
  the weights), so the first gradient steps do not come from a random head ("LP-FT", Kumar et al.
  2022); the start itself (best epoch ``-1``: the probe head on the unchanged encoder) is one of the
  checkpoints the validation ROC-AUC chooses from;
- ``ecfp_lr``: ECFP4 + logistic regression per task (fingerprint baseline).

Score: ROC-AUC per task on the scaffold test split, macro over tasks with both classes, then the
average over data sets, set beside Hu et al. (2020): GIN without pretraining 67.0, the best 2D
pretraining about 74 (averages over the eight sets, 10 seeds, 100 fine-tuning epochs).
"""

from __future__ import annotations

import copy
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor
from torch.utils.data import DataLoader
from torch_geometric.data import HeteroData

from cgc_framework.engine.shards import PackedGraphs
from cgc_framework.plugin import (
    Encoder,
    EvaluationContext,
    EvaluationResult,
    Evaluator,
    HeldOutMolecules,
    Roles,
)
from cgc_framework.plugin.metrics import multitask_classification_metrics

from .common import guard_note, leakage_rows, pretraining_inchikeys
from .fewshot import scaffold_held_out
from .minimol import minimol_embeddings
from .molnet import Split, load_molnet, molnet_cache_dir, molnet_data_files
from .params import CLASSIFICATION_SETS as CLASSIFICATION_SETS
from .params import ScaffoldParams

LITERATURE = {"Hu et al. 2020, GIN without pretraining": 67.0,
              "Hu et al. 2020, best 2D pretraining (about)": 74.0}


def _auroc(y: np.ndarray, scores: np.ndarray, present: np.ndarray, tasks: list[str]) -> float:
    res = multitask_classification_metrics(y, scores, tasks, weights=present)
    return res.macro.get("auroc", float("nan"))


def _fit_probe(x_tr: np.ndarray, tr: Split, t: int) -> tuple[StandardScaler, LogisticRegression] | None:
    """Task ``t``'s probe: standardisation + logistic regression on its labelled training rows;
    None when they hold one class only."""
    keep = tr.present[:, t]
    if np.unique(tr.y[keep, t]).size < 2:
        return None
    scaler = StandardScaler().fit(x_tr[keep])
    return scaler, LogisticRegression(max_iter=2000).fit(scaler.transform(x_tr[keep]), tr.y[keep, t])


def _probe(x_tr: np.ndarray, tr: Split, x_te: np.ndarray, te: Split, tasks: list[str]) -> float:
    scores = np.zeros(te.y.shape, dtype=float)
    for t in range(len(tasks)):
        if (fit := _fit_probe(x_tr, tr, t)) is not None:
            scaler, clf = fit
            scores[:, t] = clf.predict_proba(scaler.transform(x_te))[:, 1]
    return _auroc(te.y, scores, te.present, tasks)


def molecule_vector(encoder: Encoder, z: dict[str, Tensor], batch: HeteroData, roles: Roles) -> Tensor:
    """The fine-tuning head's input ``[B, 2 * hidden_dim]``: the encoder's readout of the molecule
    parts (atoms) ++ of the molecule node per graph (with gradients; frozen embeddings come from
    :class:`~cgc_framework.plugin.Pretrained`)."""
    return torch.cat([encoder.readout(z, batch, roles.molecule_part), encoder.readout(z, batch, roles.molecule)], 1)


class _Classifier(torch.nn.Module):
    def __init__(self, encoder: Encoder, num_tasks: int, roles: Roles):
        super().__init__()
        self.encoder = encoder
        self.roles = roles
        self.head = torch.nn.Linear(2 * encoder.hidden_dim, num_tasks)

    def forward(self, batch):
        return self.head(self.features(batch))

    def features(self, batch) -> Tensor:
        return molecule_vector(self.encoder, self.encoder(batch), batch, self.roles)

    @torch.no_grad()
    def head_from_probe(self, train: _Labelled, split: Split, device: torch.device, batch_size: int = 256) -> None:
        """Sets the head to the linear probe of the current encoder's features on ``train`` (LP-FT):
        per task ``w / scale`` and ``b - sum(w * mean / scale)`` of its standardised logistic
        regression, so ``head(x)`` equals the probe's logit; a task with one class gets a zero row."""
        self.eval()
        n = len(train.graphs)
        x = torch.cat([self.features(train.graphs.collate(range(i, min(i + batch_size, n))).to(device)).cpu()
                       for i in range(0, n, batch_size)]).numpy().astype(np.float64)
        weight, bias = np.zeros((split.y.shape[1], x.shape[1])), np.zeros(split.y.shape[1])
        for t in range(split.y.shape[1]):
            if (fit := _fit_probe(x, split, t)) is not None:
                scaler, clf = fit
                weight[t] = clf.coef_[0] / scaler.scale_
                bias[t] = clf.intercept_[0] - weight[t] @ scaler.mean_
        self.head.weight.copy_(torch.as_tensor(weight))
        self.head.bias.copy_(torch.as_tensor(bias))


@dataclass
class _Labelled:
    """One split for fine-tuning: its graphs, packed, and labels ``y`` (float ``[N, T]``) with the
    label-present mask ``present`` (float ``[N, T]``)."""

    graphs: PackedGraphs
    y: Tensor
    present: Tensor

    @classmethod
    def of(cls, graphs: PackedGraphs, split: Split) -> _Labelled:
        return cls(graphs, torch.tensor(split.y, dtype=torch.float32), torch.tensor(split.present, dtype=torch.float32))


@torch.no_grad()
def _predict(model: _Classifier, data: _Labelled, device: torch.device, batch_size: int = 256) -> np.ndarray:
    model.eval()
    n = len(data.graphs)
    return torch.cat([torch.sigmoid(model(data.graphs.collate(range(i, min(i + batch_size, n))).to(device)))
                      for i in range(0, n, batch_size)]).cpu().numpy()


def _finetune(model: _Classifier, train: _Labelled, valid: _Labelled, test: _Labelled, p: ScaffoldParams,
              seed: int, device: torch.device, tasks: list[str],
              on_epoch: Callable[[int, float, float], None] = lambda *_: None,
              score_start: bool = False) -> tuple[float, float, int]:
    """Returns (test ROC-AUC at the best-valid epoch, best valid ROC-AUC, best epoch). The batches
    are those a ``DataLoader(shuffle=True)`` of the graphs draws with a generator seeded by ``seed``.
    ``on_epoch(epoch, mean training loss, valid ROC-AUC)`` is called after each epoch, and with
    ``score_start`` first for the untrained start as epoch -1 (loss NaN), which may then be the best."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    order = DataLoader(range(len(train.graphs)), batch_size=p.batch_size, shuffle=True,  # batches of indices
                       generator=torch.Generator().manual_seed(seed))
    yv, pv = valid.y.numpy().astype(int), valid.present.numpy().astype(bool)
    yt, pt = test.y.numpy().astype(int), test.present.numpy().astype(bool)
    best = (-1.0, float("nan"), -1)
    if score_start:
        v = _auroc(yv, _predict(model, valid, device), pv, tasks)
        on_epoch(-1, float("nan"), v)
        best = (v, _auroc(yt, _predict(model, test, device), pt, tasks), -1)
    for epoch in range(p.epochs):
        model.train()
        losses = []
        for idx in order:
            logits = model(train.graphs.collate(idx).to(device))
            y, w = train.y[idx].to(device), train.present[idx].to(device)
            loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum() / w.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        v = _auroc(yv, _predict(model, valid, device), pv, tasks)
        on_epoch(epoch, float(np.mean(losses)), v)
        if v > best[0]:
            best = (v, _auroc(yt, _predict(model, test, device), pt, tasks), epoch)
    return best[1], best[0], best[2]


class _Curve:
    """The fine-tuning curve: one row per epoch (set, protocol, init, epoch, mean training loss,
    valid ROC-AUC, seconds since the set's fine-tuning started), appended to ``path`` as each epoch
    ends, so a long run shows where it is; at the end the same rows are the ``finetune_curve`` table."""

    COLUMNS = ("dataset", "protocol", "init", "epoch", "train_loss", "valid_auroc", "seconds")

    def __init__(self, path: Path):
        self.path, self.rows = path, []
        path.unlink(missing_ok=True)

    def epoch_logger(self, dataset: str, protocol: str, init: str) -> Callable[[int, float, float], None]:
        start = time.perf_counter()

        def log(epoch: int, loss: float, valid_auroc: float) -> None:
            row = dict(zip(self.COLUMNS, (dataset, protocol, init, epoch, loss, valid_auroc,
                                          time.perf_counter() - start)))
            self.rows.append(row)
            new = not self.path.exists()
            with self.path.open("a", newline="") as f:
                writer = csv.DictWriter(f, self.COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
        return log


class ScaffoldBenchmark(Evaluator):
    def __init__(self, params: ScaffoldParams | None = None):
        self.params = params or ScaffoldParams()

    def data_files(self) -> dict[str, list[Path]]:
        return molnet_data_files(self.params.model_dump())

    def held_out_molecules(self, plan) -> HeldOutMolecules:
        return scaffold_held_out(self.params.datasets, self.params.data_dir)

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        rows: list[dict] = []
        leakage: list[dict] = []
        seen = pretraining_inchikeys(ctx.plan)
        curve = _Curve(ctx.output_dir / "finetune_curve.csv")
        with torch.enable_grad():
            for name in p.datasets:   # one set at a time: its graphs are freed before the next is built
                set_rows, set_leakage = self._score_set(name, ctx, seen, curve)
                rows += set_rows
                leakage += set_leakage
        table, leaks = pd.DataFrame(rows), pd.DataFrame(leakage)
        test_leaks = leaks[leaks.split == "test"]
        text = _summary(table, p) + "\n\nMolecules of the scaffold test splits that the pretraining data " \
            "contained (InChIKey connectivity match): " + ", ".join(
                f"{r.dataset} {r.seen_in_pretraining}/{r.molecules}" for r in test_leaks.itertuples()) + ". " \
            + guard_note(ctx.plan)
        tables = {"scaffold": table, "leakage": leaks}
        if curve.rows:
            tables["finetune_curve"] = pd.DataFrame(curve.rows)
        return EvaluationResult(tables, text)

    def _score_set(self, name: str, ctx: EvaluationContext, seen, curve: _Curve) -> tuple[list[dict], list[dict]]:
        """The rows of one MoleculeNet set (every protocol x init) and its leakage rows."""
        p = self.params
        pretrained, untrained = ctx.pretrained(), ctx.pretrained(untrained=True)
        ds = load_molnet(name, p.data_dir)
        leakage = leakage_rows(name, {"train": ds.train.smiles, "test": ds.test.smiles}, seen)
        tr = ds.train
        if p.max_train and len(tr.smiles) > p.max_train:
            idx = np.sort(np.random.default_rng(ctx.seed).choice(len(tr.smiles), p.max_train, replace=False))
            tr = Split(tr.smiles[idx], tr.ecfp[idx], tr.y[idx], tr.present[idx])
        splits = {"train": tr, "valid": ds.valid, "test": ds.test}
        graphs, sub = {}, {}
        for part, sp in splits.items():   # packed: MUV's 93k molecules as a list of graphs hold ~5 GB
            graphs[part], rejected = pretrained.build_packed(list(sp.smiles), "molecule")
            ok = np.ones(len(sp.smiles), bool)
            ok[rejected] = False
            sub[part] = Split(sp.smiles[ok], sp.ecfp[ok], sp.y[ok], sp.present[ok])
        base = {"dataset": name, "n_train": len(sub["train"].smiles), "n_test": len(sub["test"].smiles)}
        rows = []
        if "ecfp_lr" in p.protocols:
            rows.append({**base, "protocol": "ecfp_lr", "init": "-",
                         "test_auroc": _probe(sub["train"].ecfp, sub["train"], sub["test"].ecfp, sub["test"], ds.tasks)})
        if "minimol_lr" in p.protocols:
            folder = molnet_cache_dir(p.data_dir)
            mm_tr, mm_te = (minimol_embeddings([str(x) for x in sub[part].smiles], folder)[0] for part in ("train", "test"))
            rows.append({**base, "protocol": "minimol_lr", "init": "-",
                         "test_auroc": _probe(mm_tr, sub["train"], mm_te, sub["test"], ds.tasks)})
        if "linear_probe" in p.protocols:
            for init, pre in (("pretrained", pretrained), ("untrained", untrained)):
                with torch.no_grad():
                    x_tr = pre.embed_graphs(graphs["train"], "molecule").numpy()
                    x_te = pre.embed_graphs(graphs["test"], "molecule").numpy()
                rows.append({**base, "protocol": "linear_probe", "init": init,
                             "test_auroc": _probe(x_tr, sub["train"], x_te, sub["test"], ds.tasks)})
        labelled = {part: _Labelled.of(graphs[part], sub[part]) for part in splits}
        for protocol in ("finetune", "finetune_lp"):
            if protocol not in p.protocols:
                continue
            for init in p.finetune_init:
                # drawing the untrained weights re-seeds torch, so the head below starts from the same
                # state on every set: a set's score does not depend on the sets listed before it
                fresh = ctx.pretrained(untrained=True).model.encoder
                enc = copy.deepcopy(ctx.model.encoder if init == "pretrained" else fresh)
                model = _Classifier(enc, len(ds.tasks), ctx.plan.roles).to(ctx.device)
                if protocol == "finetune_lp":
                    model.head_from_probe(labelled["train"], sub["train"], ctx.device)
                test_auc, valid_auc, epoch = _finetune(model, labelled["train"], labelled["valid"], labelled["test"],
                                                       p, ctx.seed, ctx.device, ds.tasks,
                                                       curve.epoch_logger(name, protocol, init),
                                                       score_start=protocol == "finetune_lp")
                rows.append({**base, "protocol": protocol, "init": init, "test_auroc": test_auc,
                             "valid_auroc": valid_auc, "best_epoch": epoch})
        return rows, leakage


def _summary(table: pd.DataFrame, p: ScaffoldParams) -> str:
    t = table.assign(method=table.protocol + " / " + table.init)
    wide = t.pivot_table(index="method", columns="dataset", values="test_auroc")
    wide["average"] = wide.mean(axis=1)
    lines = ["Scaffold-split test ROC-AUC x 100 (task macro), one seed"
             + (f", fine-tuning {p.epochs} epochs" if {"finetune", "finetune_lp"} & set(p.protocols) else "")
             + (f", training split subsampled to {p.max_train}" if p.max_train else "") + ":", "",
             "| method | " + " | ".join(wide.columns) + " |", "|---|" + "---|" * len(wide.columns)]
    for method, row in wide.iterrows():
        lines.append(f"| {method} | " + " | ".join(f"{100 * v:.1f}" for v in row.values) + " |")
    lines += ["", "Literature (averages over the eight sets): " +
              "; ".join(f"{k}: {v:.1f}" for k, v in LITERATURE.items()) + ". The average above covers "
              f"{len(wide.columns) - 1} set(s)"
              + ("" if len(wide.columns) - 1 == 8 else ", so it is not directly comparable") + "."]
    return "\n".join(lines)
