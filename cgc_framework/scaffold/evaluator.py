"""``--kind evaluator``: an evaluation protocol run after pretraining."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

EVALUATOR = '''\
"""The '$name' evaluator: are the pretrained embeddings informative, or collapsed?

For up to ``max_records`` records of the run's dataset it embeds every experiment graph at the
molecule level and the cell level (the schema's ``molecule`` / ``cell_state`` roles) with the
pretrained model and with the same architecture untrained, and reports

- the effective rank (RankMe, Garrido et al. 2023): exp of the entropy of the normalized singular
  values of the embedding matrix; 1 = every graph on one line, up to min(graphs, hidden_dim);
- the mean pairwise cosine similarity of the embeddings (near 1 = collapsed).

Replace ``evaluate`` with your protocol. Contract (``cgc_framework.plugin.Evaluator``): after
pretraining the framework calls ``evaluate(context)`` (``EvaluationContext``: the run's ``plan``,
the ``model`` loaded from the final checkpoint, ``output_dir``, ``seed``) under ``torch.no_grad()``
and writes what it returns, an ``EvaluationResult``: tidy tables (one row per observation; each
written as ``evaluations/<key>/<table>.csv``) and a Markdown paragraph for ``summary.md``. Build
graphs of inputs with ``context.plan.build_graphs`` (exactly as pretraining built them) and embed
them with ``context.pretrained()``. An input the protocol cannot use raises ``ValueError`` (the run
reports it as a ``PluginError`` naming this plugin); bad params are ``ConfigError`` before any work.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from cgc_framework.plugin import EvaluationContext, EvaluationResult, Evaluator, ParamsModel, SkipLog
from cgc_framework.plugin.roles import CELL_STATE, MOLECULE

NAME = "$name"
LEVELS = {"molecule": MOLECULE, "cell": CELL_STATE}  # embedding level -> node role it reads out


class ${cls}Params(ParamsModel):
    """``evaluations.<key>.params`` in registry.yaml (unknown keys are errors)."""

    max_records: int = Field(256, gt=1, description="records of the run's dataset to embed (at least 2)")
    cell_state: Literal["treated", "control"] = Field(
        "treated", description="cell level: embed the treated profile or the control state")


class ${cls}Evaluator(Evaluator):
    def __init__(self, params: ${cls}Params | None = None):
        self.p = params or ${cls}Params()

    def evaluate(self, context: EvaluationContext) -> EvaluationResult:
        plan = context.plan
        levels = [level for level, role in LEVELS.items() if plan.roles.node_types(role)]
        if not levels:
            raise ValueError(f"'{NAME}' needs node types with the role 'molecule' or 'cell_state'; the run's "
                             f"schema has none (node types: {', '.join(plan.schema.node_types)})")
        records = itertools.islice(plan.dataset.records(SkipLog()), self.p.max_records)
        graphs = plan.build_graphs(records).graphs
        rows: list[dict[str, Any]] = []
        for model, pretrained in (("pretrained", context.pretrained()),
                                  ("untrained", context.pretrained(untrained=True))):
            for level in levels:
                z = pretrained.embed_graphs(graphs, level, state=self.p.cell_state)  # [graphs, hidden_dim]
                for metric, value in (("effective_rank", effective_rank(z)), ("mean_cosine", mean_cosine(z))):
                    rows.append({"level": level, "model": model, "metric": metric, "value": value,
                                 "graphs": z.size(0), "hidden_dim": z.size(1)})
        return EvaluationResult(tables={"embedding_rank": rows}, summary_markdown=_markdown(rows))


def effective_rank(z: Tensor) -> float:
    """RankMe: ``exp(-sum p_k log p_k)`` with ``p = s / sum(s)`` over the singular values ``s`` of ``z``."""
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum().clamp_min(1e-12) + 1e-12
    return float(torch.exp(-(p * p.log()).sum()))


def mean_cosine(z: Tensor) -> float:
    """Mean cosine similarity over the pairs of distinct rows of ``z`` (NaN for fewer than 2 rows)."""
    n = z.size(0)
    if n < 2:
        return math.nan
    zn = F.normalize(z.double(), dim=1)
    sim = zn @ zn.T
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def _markdown(rows: list[dict[str, Any]]) -> str:
    value = {(r["level"], r["model"], r["metric"]): r["value"] for r in rows}
    lines = [f"Embeddings of {rows[0]['graphs']} experiment graphs ({rows[0]['hidden_dim']} dimensions). An "
             "effective rank near 1 or a mean cosine near 1 means the embeddings collapsed.", "",
             "| level | model | effective rank | mean cosine |", "|---|---|---:|---:|"]
    for level, model in dict.fromkeys((r["level"], r["model"]) for r in rows):
        lines.append(f"| {level} | {model} | {value[level, model, 'effective_rank']:.2f} | "
                     f"{value[level, model, 'mean_cosine']:.3f} |")
    return "\\n".join(lines)
'''

TEST = '''\
"""The evaluator is found through its entry point, evaluates a real (tiny) pretraining run, and
its bad params are configuration errors before any work starts."""

import pandas as pd
import pytest

from cgc_framework.plugin import ConfigError

DIST = "$dist"
NAME = "$name"


$registered_test


def test_evaluates_a_pretrained_run(pretrain):
    result = pretrain({"evaluations": {"emb": {"name": NAME, "params": {"max_records": 8}}}})
    table = pd.read_csv(result.run_dir / "evaluations" / "emb" / "embedding_rank.csv")
    assert set(zip(table.level, table.model, table.metric)) == {
        (level, model, metric) for level in ("molecule", "cell") for model in ("pretrained", "untrained")
        for metric in ("effective_rank", "mean_cosine")}
    ranks = table[table.metric == "effective_rank"].value
    assert ((ranks >= 1) & (ranks <= 8 + 1e-6)).all()  # at most min(graphs, hidden_dim)
    assert table[table.metric == "mean_cosine"].value.between(-1, 1).all()
    assert "| molecule | pretrained |" in result.summary_path.read_text()


def test_bad_params_are_config_errors(make_plan):
    with pytest.raises(ConfigError, match="max_records"):
        make_plan({"evaluations": {"emb": {"name": NAME, "params": {"max_records": 1}}}})
'''

KIND = Kind(
    help="an evaluation protocol run after pretraining (tidy tables + Markdown)",
    summary="the '$name' evaluator",
    components=(Component("evaluator", "$name", "evaluator:${cls}Evaluator", "evaluator:${cls}Params",
                          "collapse check: effective rank (RankMe) and mean cosine of molecule- and "
                          "cell-level embeddings, pretrained vs untrained"),),
    files={"$package/evaluator.py": EVALUATOR, "tests/test_plugin.py": TEST},
    about="The example embeds records of the run's dataset at the molecule and cell level with the "
          "pretrained and the untrained model and reports the effective rank (RankMe) and mean cosine "
          "similarity of the embeddings, as a tidy table and a Markdown paragraph (`$package/evaluator.py`). "
          "Replace `evaluate()` with your protocol; return an `EvaluationResult`.",
    usage="""\
Use it in `registry.yaml`; its tables are written to `<run>/evaluations/<key>/`:

```yaml
evaluations:
  $name: {name: $name, params: {max_records: 256, cell_state: treated}}
```""",
)
