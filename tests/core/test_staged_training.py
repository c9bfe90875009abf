"""The staged objective (proposal §2.2.4, §2.3.3): mask -> +contrast -> +causal, run by the orchestrator."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

from cgc_framework.api import run
from cgc_framework.engine.checkpoint import build_model, load_checkpoint
from cgc_framework.engine.config import CGCConfig
from cgc_framework.engine.registry import load_registry
from cgc_framework.engine.training import LoopConfig, PretrainModel, StageSpec, run_stages
from cgc_framework.plugin.graph import GraphSchema
from cgc_plugins.encoders import HGTEncoder, HGTParams, TypedAttentionEncoder, TypedAttentionParams
from cgc_plugins.tasks import CausalIntervention, CrossModalContrast, MaskedNodeRecovery
from tests.graph_fixtures import FixtureCellPlugin, lincs_experiment_graphs, three_stage_config

STAGES = (StageSpec(0, "mask", 1, {"mask": 1.0}),
          StageSpec(1, "contrast", 1, {"mask": 1.0, "contrast": 0.5}),
          StageSpec(2, "causal", 1, {"mask": 1.0, "contrast": 0.5, "causal": 2.0}))


def _model(schema, encoder="hgt", hidden=16):
    torch.manual_seed(0)
    enc = (HGTEncoder(HGTParams(hidden_dim=hidden, heads=2), schema) if encoder == "hgt"
           else TypedAttentionEncoder(TypedAttentionParams(hidden_dim=hidden), schema))
    return PretrainModel(enc, {"mask": MaskedNodeRecovery(None, schema, hidden),
                               "contrast": CrossModalContrast(None, schema, hidden),
                               "causal": CausalIntervention(None, schema, hidden)})


@pytest.mark.parametrize("encoder", ["hgt", "typed_attention"])
def test_gradients_reach_every_parameter_group_each_stage_trains(encoder):
    """Per stage: every parameter of every active task gets a non-zero gradient, the encoder's
    sub-modules all do, and inactive tasks get none."""
    schema, graphs, _ = lincs_experiment_graphs(8)
    model = _model(schema, encoder)
    batch = Batch.from_data_list(graphs[:32])
    for stage in STAGES:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        total, logs = model(batch, stage.weights)
        total.backward()
        assert {k for k in logs if k.endswith("/loss")} == {f"{k}/loss" for k in stage.weights}
        # a categorical column that is one class in the whole batch is a constant target, which the
        # normalized masked-recovery loss leaves out by design: its head gets no gradient
        constant = {f"heads.{t}.categorical.{i}." for t in batch.node_types if "x_cat" in batch[t]
                    for i in range(batch[t].x_cat.size(1)) if batch[t].x_cat[:, i].unique().numel() == 1}
        assert constant == {"heads.atom.categorical.3.", "heads.atom.categorical.5."}  # charge 0, no radicals here
        for key, task in model.tasks.items():
            grads = {n: p.grad for n, p in task.named_parameters()}
            if key in stage.weights:
                dead = [n for n, g in grads.items() if g is None or g.abs().sum() == 0]
                expected = [n for n in grads if key == "mask" and any(n.startswith(c) for c in constant)]
                assert dead == expected, (stage.name, key, dead)
            else:
                assert all(g is None for g in grads.values()), (stage.name, key)
        groups = {}  # encoder sub-module -> total |grad|
        for n, p in model.encoder.named_parameters():
            group = ".".join(n.split(".")[:3])  # e.g. embed.node.atom, convs.0.lin_k
            groups[group] = groups.get(group, 0.0) + (0.0 if p.grad is None else float(p.grad.abs().sum()))
        dead = [g for g, v in groups.items() if v == 0 and not g.startswith("embed.node.compound")]
        assert not dead, (stage.name, dead)


class _RecordingAdam(torch.optim.Adam):
    """Adam that records the parameters it starts from and the gradient of every step."""

    created: list = []

    def __init__(self, params, **kw):
        params = list(params)
        super().__init__(params, **kw)
        self.start = [p.detach().clone() for p in params]
        self.grads = []
        _RecordingAdam.created.append(self)

    def step(self, closure=None):
        self.grads.append([None if p.grad is None else p.grad.detach().clone()
                           for g in self.param_groups for p in g["params"]])
        return super().step(closure)


def _loop(stages, batch_size=16, accum=1, seed=0):
    return LoopConfig(stages=stages, lr=1e-3, weight_decay=0.0, batch_size=batch_size, grad_accum_steps=accum,
                      grad_clip_norm=None, seed=seed)


def test_each_stage_starts_from_the_last_stage_weights_with_a_fresh_adam(monkeypatch):
    schema, graphs, _ = lincs_experiment_graphs(8)
    model = _model(schema)
    monkeypatch.setattr(torch.optim, "Adam", _RecordingAdam)
    _RecordingAdam.created = []
    ends = []
    steps = []

    def on_stage_end(stage, position):
        ends.append({n: p.detach().clone() for n, p in model.named_parameters()})
    run_stages(model, model, graphs[:48], _loop(STAGES), device=torch.device("cpu"),
               on_step=lambda row, *_: steps.append(row), on_stage_end=on_stage_end)
    opts = _RecordingAdam.created
    assert len(opts) == 3 and len(ends) == 3 and len(steps) == 9  # 48 graphs / 16 = 3 steps per stage
    assert [r["stage"] for r in steps] == ["mask"] * 3 + ["contrast"] * 3 + ["causal"] * 3
    names = dict((id(p), n) for n, p in model.named_parameters())
    for k in (1, 2):
        params = [p for g in opts[k].param_groups for p in g["params"]]
        for p, start in zip(params, opts[k].start):
            assert torch.equal(start, ends[k - 1][names[id(p)]])
    # stage 1 trained neither the contrast nor the causal heads; stage 3 trained the causal heads
    init = _model(schema)
    assert torch.equal(ends[1]["tasks.causal.heads.compartment.0.weight"],
                       init.tasks["causal"].heads["compartment"][0].weight)
    assert not torch.equal(ends[2]["tasks.causal.heads.compartment.0.weight"],
                           init.tasks["causal"].heads["compartment"][0].weight)
    assert not torch.equal(ends[0]["tasks.mask.heads.atom.categorical.0.weight"],
                           init.tasks["mask"].heads["atom"].categorical[0].weight)


def test_gradient_accumulation_equals_the_full_batch_gradient(monkeypatch):
    """batch 16 in one pass vs 2 micro-batches of 8 accumulated: same gradient, same step count.
    (Causal task: deterministic, and its loss is a mean over equally sized graphs.)"""
    schema, graphs, _ = lincs_experiment_graphs(8)
    monkeypatch.setattr(torch.optim, "Adam", _RecordingAdam)
    stage = (StageSpec(0, "causal", 1, {"causal": 1.0}),)
    grads = {}
    for accum in (1, 2):
        _RecordingAdam.created = []
        model = _model(schema)
        run_stages(model, model, graphs[:32], _loop(stage, batch_size=16, accum=accum),
                   device=torch.device("cpu"))
        (opt,) = _RecordingAdam.created
        assert len(opt.grads) == 2
        grads[accum] = opt.grads[0]
    for g1, g2 in zip(grads[1], grads[2]):
        assert (g1 is None) == (g2 is None)
        if g1 is not None:
            assert torch.allclose(g1, g2, atol=1e-6, rtol=1e-4)
    assert any(g is not None and g.abs().sum() > 0 for g in grads[1])


@pytest.fixture(scope="module")
def three_stage_run(tmp_path_factory):
    cfg = CGCConfig.model_validate(three_stage_config(epochs=(2, 2, 5), batch_size=32))
    return run(cfg, run_dir=tmp_path_factory.mktemp("run") / "r", progress=False,
               extra_plugins=(FixtureCellPlugin(limit=128),))


def test_orchestrator_runs_three_stages_and_each_loss_decreases(three_stage_run):
    res = three_stage_run
    m = res.metrics
    assert list(m.groupby("stage_index")["stage"].first()) == ["mask", "contrast", "causal"]
    assert m["step"].tolist() == list(range(1, len(m) + 1)) and len(m) == 9 * 4  # 128 graphs / 32 -> 4
    for stage, cols in (("mask", ["mask/loss"]), ("contrast", ["mask/loss", "contrast/loss"]),
                        ("causal", ["mask/loss", "contrast/loss", "causal/loss"])):
        s = m[m.stage == stage]
        for c in cols:
            assert s[c].notna().all(), (stage, c)
        for c in set(["mask/loss", "contrast/loss", "causal/loss"]) - set(cols):
            assert s[c].isna().all(), (stage, c)
    # each task's loss falls from the first to the last epoch in which it is trained (same graphs)
    for task, first_stage in (("mask", 0), ("contrast", 1), ("causal", 2)):
        s = m[m.stage_index >= first_stage]
        first = s[s.stage_index == first_stage].iloc[:4][f"{task}/loss"].mean()
        last = s.iloc[-4:][f"{task}/loss"].mean()
        assert last < 0.97 * first, (task, first, last)
    summary = res.summary_path.read_text()
    rows = [ln for ln in summary.splitlines() if ln.startswith("| ") and "/" in ln]
    for stage, key in (("1. mask", "mask/loss"), ("2. contrast", "mask/loss"), ("2. contrast", "contrast/loss"),
                       ("3. causal", "causal/loss"), ("3. causal", "contrast/loss"), ("3. causal", "mask/loss")):
        assert any(ln.startswith(f"| {stage} | {key} |") for ln in rows), (stage, key)
    assert not any(ln.startswith("| 1. mask | contrast/loss") for ln in rows)
    # per-type losses of every task are in the metrics table
    for col in ("mask/atom_loss", "mask/compartment_loss", "mask/atom-bond-atom_loss",
                "mask/compound-treats-compartment_loss", "contrast/top1", "causal/compartment_loss",
                "causal/compartment_control_mse"):
        assert col in m.columns, col


def test_stage_checkpoints_rebuild_the_model(three_stage_run):
    d = three_stage_run.run_dir / "checkpoints"
    names = sorted(p.name for p in d.glob("*.pt"))
    assert names == ["final.pt", "stage1_mask.pt", "stage2_contrast.pt", "stage3_causal.pt"]
    registry = load_registry((FixtureCellPlugin(),))
    states = {}
    for name in names:
        ckpt = torch.load(d / name, weights_only=True)
        assert load_checkpoint(d / name)["stage"] == ckpt["stage"]
        model = build_model(ckpt, GraphSchema.from_dict(ckpt["schema"]), registry)
        model.load_state_dict(ckpt["model"])  # strict: every key matches
        assert set(ckpt["tasks"]) == {"mask", "contrast", "causal"}
        assert ckpt["encoder"]["name"] == "typed_attention"
        states[name] = ckpt["model"]
    k = "tasks.causal.heads.compartment.0.weight"
    assert torch.equal(states["stage1_mask.pt"][k], states["stage2_contrast.pt"][k])  # not trained yet
    assert not torch.equal(states["stage2_contrast.pt"][k], states["stage3_causal.pt"][k])
    e = "encoder.embed.node.atom.embeddings.0.weight"
    assert not torch.equal(states["stage1_mask.pt"][e], states["stage2_contrast.pt"][e])
    assert torch.equal(states["stage3_causal.pt"][e], states["final.pt"][e])


def test_three_stage_run_with_hgt_and_accumulation(tmp_path):
    cfg = CGCConfig.model_validate(three_stage_config(encoder="hgt", epochs=(1, 1, 1), batch_size=64,
                                                      grad_accum_steps=2))
    res = run(cfg, run_dir=tmp_path / "r", progress=False, extra_plugins=(FixtureCellPlugin(limit=128),))
    m = res.metrics
    assert len(m) == 3 * 2 and (m.graphs == 64).all()  # 128 graphs / 64 per step, 2 micro-batches of 32
    assert pd.Series(m.columns).str.endswith("/loss").sum() == 3
