"""SMILES -> the run's molecule graphs -> molecule-level vectors, for the molecule evaluators."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.contracts import EvaluationContext
from cgc_framework.graph import readout
from cgc_framework.records import RecordError


def smiles_to_graphs(ctx: EvaluationContext, smiles: list[str]) -> tuple[list[HeteroData], np.ndarray]:
    """Graphs built by the run's molecule builder, conformed to the run's schema, and the boolean
    mask ``[N]`` of the SMILES it accepted (rejected ones are excluded by the caller, for every method)."""
    builder = next(m.builder for m in ctx.plan.modalities.values() if m.modality.record_field == "smiles")
    graphs, ok = [], np.zeros(len(smiles), dtype=bool)
    for i, s in enumerate(smiles):
        try:
            graphs.append(ctx.plan.schema.conform(builder.build(s)))
            ok[i] = True
        except RecordError:
            continue
    return graphs, ok


def molecule_vector(z: dict[str, Tensor], batch: HeteroData) -> Tensor:
    """``[B, 2 * hidden_dim]``: mean atom embedding ++ compound-node embedding per graph."""
    return torch.cat([readout(z["atom"], batch, "atom"), readout(z["compound"], batch, "compound")], 1)


@torch.no_grad()
def embed(encoder: torch.nn.Module, graphs: list[HeteroData], device: torch.device,
          batch_size: int = 256) -> np.ndarray:
    """Frozen molecule vectors ``[len(graphs), 2 * hidden_dim]`` (encoder in eval mode)."""
    encoder.eval()
    out = [molecule_vector(encoder(b.to(device)), b) for b in DataLoader(graphs, batch_size=batch_size)]
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, 2 * encoder.hidden_dim), np.float32)
