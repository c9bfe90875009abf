"""Leakage guard: the pretraining corpus leaves out the molecules that evaluations score as unseen,
and says so (SkipLog component ``leakage_guard``, the dataset description in the summary)."""

from __future__ import annotations

import pandas as pd

from cgc_framework import hookimpl
from cgc_framework.api import plan_run
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.engine.leakage import LEAKAGE_GUARD, HeldOutFilter
from cgc_framework.plugin.contracts import EvaluationResult, Evaluator
from cgc_framework.plugin.records import SkipLog
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS
from cgc_plugins.evaluators.common import dataset_with_splits, held_out, inchikey14

ALL_SPLITS = "data.dataset.params={split: {by: compound, test_fraction: 0.2}, include_splits: [train, val, test]}"
ZS = "evaluations={zs: {name: zero_shot, params: {toxicity_sets: []}}}"


def _guard_skips(built):
    return [e for e in built.skips.entries if e.component == LEAKAGE_GUARD]


def test_zero_shot_test_compounds_are_held_out_when_pretraining_would_read_them(registry_yaml):
    plan = plan_run(registry_yaml, overrides=[ALL_SPLITS, ZS])
    assert isinstance(plan.dataset, HeldOutFilter)
    built = build_graphs(plan, progress=False)
    test = [r for r in dataset_with_splits(plan, ["test"]).records(SkipLog()) if r.fields.get("smiles")]
    keys = {inchikey14(r.fields["smiles"]) for r in test}
    guarded = _guard_skips(built)
    assert len(guarded) == len(test) > 0  # every test well of a compound with a SMILES, nothing else
    assert {e.record_id for e in guarded} == {r.id for r in test}
    assert all(e.reason == "held out: in the test part (split by compound) of evaluation 'zs' (zero_shot)"
               for e in guarded)
    kept = {inchikey14(r.fields["smiles"]) for r in plan.dataset.records(SkipLog()) if r.fields.get("smiles")}
    assert not kept & keys
    info = plan.dataset.describe()
    text = info["leakage guard (data.exclude_evaluation_test_molecules)"]
    assert f"{len(test)} records of {len(keys)} such molecules left out" in text
    # switched off: the same records are pretrained on (and the evaluation would say so)
    off = plan_run(registry_yaml, overrides=[ALL_SPLITS, ZS, "data.exclude_evaluation_test_molecules=false"])
    assert not isinstance(off.dataset, HeldOutFilter)
    built_off = build_graphs(off, progress=False)
    assert not _guard_skips(built_off) and len(built_off.graphs) == len(built.graphs) + len(test)


def test_nothing_is_held_out_when_the_split_already_excludes_the_test_compounds(registry_yaml):
    split = ALL_SPLITS.replace("include_splits: [train, val, test]", "include_splits: [train, val]")
    plan = plan_run(registry_yaml, overrides=[split, ZS])
    built = build_graphs(plan, progress=False)
    # the guard still lists the test molecules (the same molecule could come under another id or
    # from another source), but the split has already left out every record of them
    assert [(key, name) for key, name, _ in plan.dataset.held_out()] == [("zs", "zero_shot")]
    assert not _guard_skips(built)


class _HoldOut(Evaluator):
    """Holds out two named embedded compounds, as any third-party evaluator can."""

    def __init__(self, smiles: list[str]):
        self.smiles = smiles

    def held_out_molecules(self, plan):
        return held_out((inchikey14(s), "fixture test set") for s in self.smiles)

    def evaluate(self, context):
        return EvaluationResult()


class _Plugin:
    def __init__(self, smiles):
        self.smiles = smiles

    @hookimpl
    def register_evaluators(self, register):
        register("hold_out_fixture", lambda params: _HoldOut(self.smiles))


def test_any_evaluator_can_hold_molecules_out_through_the_contract(registry_yaml):
    comp = pd.read_csv(EMBEDDED_COMPOUNDS).dropna(subset=["smiles"])
    smiles = comp.smiles.iloc[:2].tolist()
    plan = plan_run(registry_yaml, overrides=["evaluations={h: {name: hold_out_fixture}}"],
                    extra_plugins=(_Plugin(smiles),))
    built = build_graphs(plan, progress=False)
    guarded = _guard_skips(built)
    keys = {inchikey14(s) for s in smiles}
    everything = [r for r in plan.dataset.inner.records(SkipLog())]
    expected = [r.id for r in everything if inchikey14(r.fields.get("smiles")) in keys]
    assert sorted(e.record_id for e in guarded) == sorted(expected) and expected
    assert guarded[0].reason == "held out: in the fixture test set of evaluation 'h' (hold_out_fixture)"
