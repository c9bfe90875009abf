"""Few-shot transfer on MoleculeNet (proposal §2.4.1): frozen embeddings + logistic regression.

Protocol, per data set and task: DeepChem's scaffold split; for each k in ``k`` and each of
``draws`` random draws, a support set of k positive and k negative training molecules (labelled
ones only); a classifier is fitted on the support set and scored on every labelled molecule of the
scaffold test split (``split: valid`` scores the validation split instead, to choose settings without
touching test). Methods compared on the same support sets: the pretrained encoder
(``pretrained``), the same encoder with untrained weights (``untrained``), ECFP4 + logistic
regression (``ecfp_lr``), ECFP4 + random forest (``ecfp_rf``) and, with the ``baselines`` extra,
frozen MiniMol embeddings + logistic regression (``minimol``, :mod:`.minimol`). Tasks whose test labels hold one
class, or whose training labels cannot supply k of each class, are listed, not averaged in.
Output: one row per data set x task x method x k x draw x metric; the summary reports the AUROC
macro-averaged over tasks, mean and 95% CI over draws.

The rows of ``untrained``, ``ecfp_lr`` and ``ecfp_rf`` do not depend on the pretraining, yet they
are most of the cost (ECFP4 + random forest: ~0.15 s per support set). With ``reuse_baselines``
(default) they are stored as JSON beside DeepChem's featurized splits and reused by any later
evaluation whose inputs are identical (see :class:`ReusedRows` for the key), so a sweep of
pretraining configurations fits them once per seed; the summary lists what was reused. Processes
evaluating at the same time (a sweep's parallel trials) split the work: each claims the rows it
computes, goes on with the next data set where another process holds a claim, and takes those
rows once they are stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cgc_framework.plugin import (
    Comparison,
    EvaluationContext,
    EvaluationResult,
    Evaluator,
    HeldOutMolecules,
)
from cgc_framework.plugin.metrics import classification_metrics, mean_ci

from .common import (
    embed_molecules,
    guard_note,
    held_out,
    inchikey14,
    leakage_rows,
    molecule_graphs,
    pretraining_inchikeys,
)
from .minimol import DIM as MINIMOL_DIM
from .minimol import minimol_embeddings, minimol_version
from .molnet import (
    MolnetSet,
    load_molnet,
    molnet_cache_dir,
    molnet_data_files,
    scaffold_split_smiles,
)
from .params import CLASSIFICATION_SETS as CLASSIFICATION_SETS
from .params import FewShotParams
from .params import Method as Method

ENCODER_METHODS = ("pretrained", "untrained")
#: The methods whose features do not depend on the pretraining: their rows can be reused.
REUSABLE_METHODS = ("untrained", "ecfp_lr", "ecfp_rf", "minimol")
#: Part of every reuse key: bump it when the protocol (classifiers, draws, metrics) changes.
PROTOCOL_VERSION = 1
#: While another process computes rows this one needs: poll interval; a claim older than this is stale.
CLAIM_POLL_S, CLAIM_STALE_S = 2.0, 6 * 3600.0
#: Training molecules whose untrained-encoder embeddings identify that encoder in a reuse key.
PROBE_MOLECULES = 64


def scaffold_held_out(datasets: list[str], data_dir, splits: tuple[str, ...] = ("test",)) -> HeldOutMolecules:
    """The scaffold ``splits`` molecules of ``datasets`` (InChIKey14), for the leakage guard."""
    return held_out((inchikey14(s), f"scaffold {split} split of {name}")
                    for name in datasets for split in splits for s in scaffold_split_smiles(name, data_dir, split))


def _support(y: np.ndarray, present: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray | None:
    pos = np.flatnonzero(present & (y == 1))
    neg = np.flatnonzero(present & (y == 0))
    if len(pos) < k or len(neg) < k:
        return None
    return np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)])


def _fit_predict(method: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    if method == "ecfp_rf":
        clf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
        return clf.fit(x_train, y_train).predict_proba(x_test)[:, 1]
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, max_iter=1000)
    return clf.fit(scaler.transform(x_train), y_train).predict_proba(scaler.transform(x_test))[:, 1]


@dataclass(frozen=True)
class Draw:
    """One support set: task column ``t``, ``k`` per class, draw number, support rows of the kept
    training molecules ``[2k]`` and the test rows labelled for the task (bool ``[n_test]``)."""

    t: int
    task: str
    k: int
    draw: int
    support: np.ndarray
    test_rows: np.ndarray


@dataclass
class Labels:
    """Labels ``[n, T]`` and label-present masks of the kept training and test molecules."""

    y_tr: np.ndarray
    pr_tr: np.ndarray
    y_te: np.ndarray
    pr_te: np.ndarray


@dataclass
class SetInputs:
    """What every method of one data set is scored from: molecule graphs of the kept training and
    test molecules, their ECFP4 bits ``([n_train, 1024], [n_test, 1024])``, labels, support sets."""

    name: str
    train_graphs: list
    test_graphs: list
    ecfp: tuple[np.ndarray, np.ndarray]
    smiles: tuple[np.ndarray, np.ndarray]
    labels: Labels
    draws: list[Draw]


def _draws(name: str, tasks: list[str], lab: Labels, ks: list[int], draws: int, seed: int,
           notes: list[str]) -> list[Draw]:
    """Every support set the methods are scored on (the same ones for every method); tasks and
    budgets that cannot be drawn or scored go to ``notes``."""
    out = []
    for t, task in enumerate(tasks):
        test_rows = lab.pr_te[:, t]
        if np.unique(lab.y_te[test_rows, t]).size < 2:
            notes.append(f"{name}/{task}: one class in the test split; skipped")
            continue
        for k in ks:
            for draw in range(draws):
                idx = _support(lab.y_tr[:, t], lab.pr_tr[:, t], k, np.random.default_rng([seed, t, k, draw]))
                if idx is None:
                    notes.append(f"{name}/{task}: fewer than {k} labelled molecules of a class; k={k} skipped")
                    break
                out.append(Draw(t, task, k, draw, idx, test_rows))
    return out


def _method_rows(name: str, method: str, x: tuple[np.ndarray, np.ndarray], lab: Labels, draws: list[Draw],
                 seed: int) -> list[dict]:
    """Tidy rows of one method on every support set (classifier seed: run seed + draw)."""
    xtr, xte = x
    rows = []
    for d in draws:
        score = _fit_predict(method, xtr[d.support], lab.y_tr[d.support, d.t], xte[d.test_rows], seed + d.draw)
        values = classification_metrics(lab.y_te[d.test_rows, d.t], score)
        rows += [{"dataset": name, "task": d.task, "method": method, "k": d.k, "draw": d.draw,
                  "metric": m, "value": v, "n_test": int(d.test_rows.sum())} for m, v in values.items()]
    return rows


def _digest(*parts: Any) -> str:
    """sha256 over arrays (their dtype, shape and bytes) and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


class ReusedRows:
    """Rows of the methods that do not depend on the pretraining, as JSON files under ``folder``,
    keyed by a digest of everything they are computed from: the protocol (version, seed, k, draws,
    the kept molecules' labels), the features (ECFP bits; for the untrained encoder its embeddings
    of a probe of molecules, which cover its weights, code and builder) and the library versions."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.reused: list[str] = []

    def key(self, dataset: str, method: str, features: str, lab: Labels, params: FewShotParams, seed: int) -> str:
        import sklearn

        return _digest(PROTOCOL_VERSION, dataset, method, features, seed, params.k, params.draws, params.max_tasks,
                       sklearn.__version__, np.__version__, lab.y_tr, lab.pr_tr, lab.y_te, lab.pr_te)

    def get(self, key: str, what: str) -> list[dict] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError):  # a file half-written by a killed process: recompute
            return None
        self.reused.append(what)
        return rows

    def put(self, key: str, rows: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, self.folder / f"{key}.json")

    def claim(self, key: str) -> bool:
        """Become the one process computing ``key``'s rows: create ``<key>.claim`` (holding host and
        pid) exclusively. False while another live process holds it; the claim of a process that
        is gone (same host), or one older than :data:`CLAIM_STALE_S`, is taken over."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not _stale_claim(path):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{socket.gethostname()} {os.getpid()}")
            return True
        return False

    def release(self, key: str) -> None:
        (self.folder / f"{key}.claim").unlink(missing_ok=True)


def _stale_claim(path: Path) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
        host, pid = path.read_text().split()
    except FileNotFoundError:
        return True
    except (OSError, ValueError):  # being written, or its writer died before writing
        return age > 60
    if host != socket.gethostname():
        return age > CLAIM_STALE_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return age > CLAIM_STALE_S


class FewShotEvaluator(Evaluator):
    def __init__(self, params: FewShotParams | None = None):
        self.params = params or FewShotParams()

    def comparisons(self) -> list[Comparison]:
        baselines = tuple(m for m in ("ecfp_lr", "ecfp_rf", "untrained", "minimol") if m in self.params.methods)
        return [Comparison("few_shot", "pretrained", baselines, "auroc", title="Few-shot AUROC")]

    def data_files(self) -> dict[str, list[Path]]:
        return molnet_data_files(self.params.model_dump())

    def held_out_molecules(self, plan) -> HeldOutMolecules:
        splits = ("test",) if self.params.split == "test" else ("test", "valid")
        return scaffold_held_out(self.params.datasets, self.params.data_dir, splits)

    def _inputs(self, name: str, ds: MolnetSet, encoders: dict[str, Any], seed: int, notes: list[str]) -> SetInputs:
        """Molecule graphs (built once, for every encoder: same builders), the kept molecules'
        labels, ECFP4 bits and support sets of one data set. Molecules the run's builder rejects
        are excluded for every method alike."""
        p = self.params
        pre = next(iter(encoders.values()), None)
        tr_graphs, tr_keep = molecule_graphs(pre, ds.train.smiles) if pre else ([], np.ones(len(ds.train.smiles), bool))
        ev = ds.test if p.split == "test" else ds.valid  # the scored split
        te_graphs, te_keep = molecule_graphs(pre, ev.smiles) if pre else ([], np.ones(len(ev.smiles), bool))
        if (~tr_keep).sum() or (~te_keep).sum():
            notes.append(f"{name}: {(~tr_keep).sum()} train / {(~te_keep).sum()} {p.split} molecules "
                         f"rejected by the molecule builder, excluded for every method")
        lab = Labels(ds.train.y[tr_keep], ds.train.present[tr_keep], ev.y[te_keep], ev.present[te_keep])
        tasks = ds.tasks[: p.max_tasks] if p.max_tasks else ds.tasks
        return SetInputs(name, tr_graphs, te_graphs, (ds.train.ecfp[tr_keep], ev.ecfp[te_keep]),
                         (ds.train.smiles[tr_keep], ev.smiles[te_keep]), lab,
                         _draws(name, tasks, lab, p.k, p.draws, seed, notes))

    def _keys(self, s: SetInputs, encoders: dict[str, Any], cache: ReusedRows, seed: int) -> dict[str, str]:
        """The reuse key of each reusable method in ``params.methods``."""
        keys = {}
        for method in (m for m in self.params.methods if m in REUSABLE_METHODS):
            if method == "minimol":
                features = _digest(minimol_version(), *[str(x) for part in s.smiles for x in part])
            elif method in ENCODER_METHODS:
                features = _digest(embed_molecules(encoders[method], s.train_graphs[:PROBE_MOLECULES]))
            else:
                features = _digest(*s.ecfp)
            keys[method] = cache.key(s.name, method, features, s.labels, self.params, seed)
        return keys

    def _features(self, s: SetInputs, method: str, encoders: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(train, evaluated)`` features of ``method``."""
        if method in ENCODER_METHODS:
            return embed_molecules(encoders[method], s.train_graphs), embed_molecules(encoders[method], s.test_graphs)
        if method == "minimol":  # embed only the training molecules some support set uses (MiniMol is slow)
            folder = molnet_cache_dir(self.params.data_dir)
            used = np.unique(np.concatenate([d.support for d in s.draws])) if s.draws else np.zeros(0, int)
            train = np.zeros((len(s.smiles[0]), MINIMOL_DIM), dtype=np.float32)
            train[used] = minimol_embeddings([str(x) for x in s.smiles[0][used]], folder)[0]
            return train, minimol_embeddings([str(x) for x in s.smiles[1]], folder)[0]
        return s.ecfp

    def _rows(self, s: SetInputs, methods: list[str], keys: dict[str, str], encoders: dict[str, Any],
              cache: ReusedRows | None, seed: int) -> tuple[dict[str, list[dict]], list[str]]:
        """Rows of ``methods`` on one data set: reused where stored, else computed (and stored).
        Returns them by method, and the methods whose rows another process has claimed (busy)."""
        done, busy = {}, []
        for method in methods:
            key = keys.get(method)
            if key is not None:
                reused = cache.get(key, f"{s.name}/{method}")
                if reused is not None:
                    done[method] = reused
                    continue
                if not cache.claim(key):
                    busy.append(method)
                    continue
            try:
                x = self._features(s, method, encoders)
                done[method] = _method_rows(s.name, method, x, s.labels, s.draws, seed)
                if key is not None:
                    cache.put(key, done[method])
            finally:
                if key is not None:
                    cache.release(key)
        return done, busy

    def evaluate(self, ctx: EvaluationContext) -> EvaluationResult:
        p = self.params
        notes, leakage = [], []
        seen = pretraining_inchikeys(ctx.plan)
        encoders = {m: ctx.pretrained(untrained=m == "untrained") for m in ENCODER_METHODS
                    if m in p.methods}
        cache = ReusedRows(molnet_cache_dir(p.data_dir) / "fewshot-rows") if p.reuse_baselines else None
        per_set: list[dict[str, list[dict]]] = []
        waiting: list[tuple[int, SetInputs, dict[str, str], list[str]]] = []
        for name in p.datasets:
            ds = load_molnet(name, p.data_dir)
            leakage += leakage_rows(name, {"train": ds.train.smiles, "test": ds.test.smiles}, seen)
            inputs = self._inputs(name, ds, encoders, ctx.seed, notes)
            keys = self._keys(inputs, encoders, cache, ctx.seed) if cache is not None else {}
            done, busy = self._rows(inputs, list(p.methods), keys, encoders, cache, ctx.seed)
            per_set.append(done)
            if busy:  # being computed by another process (a parallel sweep trial): go on, take them later
                if not any(m in ENCODER_METHODS for m in busy):
                    inputs = replace(inputs, train_graphs=[], test_graphs=[])
                waiting.append((len(per_set) - 1, inputs, keys, busy))
        for i, inputs, keys, busy in waiting:
            while busy:
                done, still = self._rows(inputs, busy, keys, encoders, cache, ctx.seed)
                per_set[i].update(done)
                if still == busy:
                    time.sleep(CLAIM_POLL_S)
                busy = still
        rows = [r for done in per_set for method in p.methods for r in done[method]]
        table, leaks = pd.DataFrame(rows), pd.DataFrame(leakage)
        text = summarize(table, sorted(set(notes)), split=p.split)
        if cache is not None and cache.reused:
            text += (f"\n\nReused rows (identical data, support sets and features; `reuse_baselines: false` "
                     f"refits them): {', '.join(cache.reused)}, from `{cache.folder}`.")
        test_leaks = leaks[leaks.split == "test"]
        text += "\n\nMolecules of the scaffold test splits that the pretraining data contained " \
                "(InChIKey connectivity match): " + ", ".join(
                    f"{r.dataset} {r.seen_in_pretraining}/{r.molecules}" for r in test_leaks.itertuples()) + ". " \
            + guard_note(ctx.plan)
        return EvaluationResult({"few_shot": table, "leakage": leaks}, text)


def summarize(table: pd.DataFrame, notes: list[str], split: str = "test") -> str:
    """Markdown: AUROC macro over tasks per draw, then mean [95% CI] over draws, per set/method/k."""
    if table.empty:
        return "No few-shot result: " + "; ".join(notes)
    auc = table[table.metric == "auroc"].groupby(["dataset", "method", "k", "draw"])["value"].mean()
    lines = [f"Few-shot AUROC (scaffold {split} split; mean [95% CI] over support draws, macro over tasks):", "",
             "| dataset | method | " + " | ".join(f"k={k}" for k in sorted(table.k.unique())) + " |",
             "|---|---|" + "---|" * table.k.nunique()]
    for (ds, method), df in auc.groupby(level=["dataset", "method"]):
        cells = []
        for k in sorted(table.k.unique()):
            m, lo, hi = mean_ci(df.xs(k, level="k").values) if k in df.index.get_level_values("k") else (np.nan,) * 3
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {ds} | {method} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines)
