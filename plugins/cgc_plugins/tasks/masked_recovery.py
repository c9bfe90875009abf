"""Masked node-feature recovery (proposal §2.2.1, node part).

For every node type, a random ``mask_rate`` fraction of nodes (at least one per non-empty type)
has its features replaced: continuous columns by 0, categorical columns by the MASK index, and
``node_mask`` set so the encoder adds its learned mask token. Heads on the encoder output recover
the originals: MSE on the continuous columns, cross-entropy on each categorical column. The loss is
the mean over node types that have nodes in the batch; per-type losses are logged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.contracts import Encoder, PretrainingTask, TaskOutput
from cgc_framework.embedding import mask_index
from cgc_framework.graph import GraphSchema


class MaskedRecoveryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mask_rate: float = Field(0.15, gt=0, lt=1, description="fraction of nodes masked per type")
    node_types: list[str] | None = Field(
        None, description="node types to mask (default: every type that has input features)")


class _NodeHead(nn.Module):
    def __init__(self, hidden_dim: int, continuous_dim: int, cardinalities: tuple[int, ...]):
        super().__init__()
        self.continuous = nn.Linear(hidden_dim, continuous_dim) if continuous_dim else None
        self.categorical = nn.ModuleList(nn.Linear(hidden_dim, c) for c in cardinalities)


class MaskedNodeRecovery(PretrainingTask):
    def __init__(self, params: MaskedRecoveryParams | None, schema: GraphSchema, hidden_dim: int):
        super().__init__()
        self.params = params or MaskedRecoveryParams()
        types = self.params.node_types or [t for t, s in schema.node_types.items()
                                           if s.continuous_dim or s.cardinalities]
        unknown = [t for t in types if t not in schema.node_types]
        if unknown:
            raise ValueError(f"node_types {unknown} are not in the graph schema "
                             f"(node types: {', '.join(schema.node_types)})")
        featureless = [t for t in types if not (schema.node_types[t].continuous_dim
                                                or schema.node_types[t].cardinalities)]
        if featureless:
            raise ValueError(f"node_types {featureless} have no input features to mask")
        self.cardinalities = {t: schema.node_types[t].cardinalities for t in types}
        self.heads = nn.ModuleDict({t: _NodeHead(hidden_dim, schema.node_types[t].continuous_dim,
                                                 schema.node_types[t].cardinalities) for t in types})

    def corrupt(self, batch: HeteroData) -> tuple[HeteroData, dict[str, Tensor]]:
        """A copy of ``batch`` with masked features, and the boolean node mask per type."""
        view = batch.clone()
        masks = {}
        for t in self.heads:
            store = view[t]
            n = store.x.size(0)
            if n == 0:
                continue
            mask = torch.rand(n, device=store.x.device) < self.params.mask_rate
            if not mask.any():
                mask[torch.randint(n, (1,), device=mask.device)] = True
            store.x = store.x.masked_fill(mask.unsqueeze(-1), 0.0)
            if store.x_cat.size(1):
                fill = torch.tensor([mask_index(c) for c in self.cardinalities[t]], device=mask.device)
                store.x_cat = torch.where(mask.unsqueeze(-1), fill, store.x_cat)
            store.node_mask = mask
            masks[t] = mask
        return view, masks

    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        view, masks = self.corrupt(batch)
        z = encoder(view)
        losses = {}
        for t, mask in masks.items():
            head, zm = self.heads[t], z[t][mask]
            parts = []
            if head.continuous is not None:
                parts.append(F.mse_loss(head.continuous(zm), batch[t].x[mask]))
            for col, lin in enumerate(head.categorical):
                parts.append(F.cross_entropy(lin(zm), batch[t].x_cat[mask, col]))
            losses[t] = torch.stack(parts).mean()
        loss = torch.stack(list(losses.values())).mean()
        return TaskOutput(loss, {f"{t}_loss": v for t, v in losses.items()})
