"""Embeddings from a pretrained checkpoint: what evaluators, notebooks and ``cgc-embed`` call.

::

    from cgc_framework.embeddings import load_pretrained
    pre = load_pretrained("runs/default-.../checkpoints/final.pt")
    mol = pre.embed_smiles(["CCO", "c1ccccc1O"])          # [2, hidden_dim] float32
    cells = pre.embed_graphs(graphs, level="cell")          # [len(graphs), hidden_dim]

Graphs are built by the *registered* graph builders, by name, exactly as pretraining built them:
the builder of each modality is taken from the checkpoint's ``builders`` entry when it has one, else
from the run directory's ``config.resolved.yaml`` (``<run>/checkpoints/<file>.pt`` ->
``<run>/config.resolved.yaml``), else ``rdkit_molecule`` for molecules; an explicit ``builder=``
argument overrides all three.

Levels (``docs/graph-conventions.md``):

- ``molecule``: mean of the ``compound`` node embeddings per experiment graph (one node per graph),
  encoded without the cross-scale edges to cell nodes, so a compound's embedding is the same
  whether it comes from a SMILES or from any experiment graph it occurs in;
- ``cell``: per graph, the mean over the cell node types present (``compartment``, ``channel``,
  ``cell_object``, ``nucleus_object``) of each type's mean node embedding. With
  ``state="treated"`` (default) the cell nodes are encoded with their treated features ``y`` and
  without co-occurrence edges (the view the contrastive task aligns with molecules); with
  ``state="control"`` they are encoded as stored (``x``, edges kept).

Embeddings are the encoder's output space (``hidden_dim`` wide), in eval mode, without gradients.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import torch
import yaml
from torch import Tensor
from torch_geometric.data import Batch, HeteroData
from torch_geometric.loader import DataLoader

from .cache import PackedGraphs
from .errors import CGCError
from .featurize import build_values
from .graph import GraphSchema, graph_from_dict, readout
from .orchestrator import build_model, load_checkpoint
from .plugins import PluginRegistry, load_registry
from .records import RecordError
from .training import PretrainModel

MOLECULE_NODE_TYPES = ("compound",)
CELL_NODE_TYPES = ("compartment", "channel", "cell_object", "nucleus_object")
DEFAULT_BUILDERS = {"molecule": {"name": "rdkit_molecule", "params": {}}}


@dataclass
class Pretrained:
    """A model rebuilt from a checkpoint, with the builders that turn raw inputs into its graphs."""

    model: PretrainModel
    schema: GraphSchema
    registry: PluginRegistry
    checkpoint: Path
    meta: dict[str, Any]
    builders: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def hidden_dim(self) -> int:
        return int(self.model.encoder.hidden_dim)

    def builder(self, modality: str = "molecule", name: str | None = None,
                params: dict[str, Any] | None = None):
        """The registered graph builder for ``modality`` (``name``/``params`` override the recorded one)."""
        ref = self.builders.get(modality) or DEFAULT_BUILDERS.get(modality)
        if name is None and ref is None:
            raise CGCError(f"no graph builder recorded for modality '{modality}' in {self.checkpoint}; "
                           f"pass builder=NAME")
        name = name or ref["name"]
        raw = params if params is not None else (ref["params"] if ref and ref["name"] == name else {})
        info = self.registry.get("graph_builder", name)
        validated = info.params.model_validate(raw or {}) if info.params else None
        return self.registry.create("graph_builder", name, validated)

    def build(self, values: Iterable[Any], modality: str = "molecule", *, builder: str | None = None,
              builder_params: dict[str, Any] | None = None, skip_invalid: bool = False) -> list[HeteroData | None]:
        """Graphs of ``values`` conformed to the checkpoint's schema (``None`` for a value the
        builder rejects when ``skip_invalid``; else its ``RecordError`` propagates)."""
        out: list[HeteroData | None] = []
        for graph in build_values(self.builder(modality, builder, builder_params), list(values)):
            if isinstance(graph, RecordError):
                if not skip_invalid:
                    raise graph
                out.append(None)
            else:
                out.append(self.schema.conform(graph))
        return out

    @torch.no_grad()
    def embed_graphs(self, graphs: Sequence[HeteroData], level: Literal["molecule", "cell"] = "molecule", *,
                     state: Literal["treated", "control"] = "treated", batch_size: int = 256) -> Tensor:
        """``[len(graphs), hidden_dim]`` embeddings at ``level`` (see the module docstring)."""
        if level == "molecule":
            types = [t for t in MOLECULE_NODE_TYPES if t in self.schema.node_types]
        elif level == "cell":
            types = [t for t in CELL_NODE_TYPES if t in self.schema.node_types]
        else:
            raise ValueError(f"level must be 'molecule' or 'cell', not {level!r}")
        if not types:
            raise CGCError(f"the checkpoint's schema has no {level} node types "
                           f"(node types: {', '.join(self.schema.node_types)})")
        self.model.eval()
        rows = []
        for batch in _batches(list(graphs), batch_size):
            batch = batch.to(self.device)
            cell = [t for t in CELL_NODE_TYPES if t in self.schema.node_types]
            if level == "cell" and state == "treated":
                batch = _treated_view(batch, cell)
            elif level == "molecule":
                batch = _drop_cell_links(batch, cell)
            z = self.model.encoder(batch)
            rows.append(_mean_readout(z, batch, types).cpu())
        return torch.cat(rows) if rows else torch.zeros(0, self.hidden_dim)

    def embed_smiles(self, smiles: Sequence[str], *, builder: str | None = None,
                     builder_params: dict[str, Any] | None = None, batch_size: int = 256) -> Tensor:
        """``[len(smiles), hidden_dim]`` molecule-level embeddings; an invalid SMILES raises
        ``RecordError`` naming the reason (filter first, or use :meth:`build` with ``skip_invalid``)."""
        graphs = self.build(smiles, "molecule", builder=builder, builder_params=builder_params)
        return self.embed_graphs(graphs, "molecule", batch_size=batch_size)  # type: ignore[arg-type]

    def embed_profiles(self, values: Sequence[Any], *, modality: str = "cell", builder: str | None = None,
                       builder_params: dict[str, Any] | None = None,
                       state: Literal["treated", "control"] = "treated", batch_size: int = 256) -> Tensor:
        """``[len(values), hidden_dim]`` cell-level embeddings of profiles, built by the cell
        modality's builder (whatever value type that builder documents)."""
        graphs = self.build(values, modality, builder=builder, builder_params=builder_params)
        return self.embed_graphs(graphs, "cell", state=state, batch_size=batch_size)  # type: ignore[arg-type]


def _batches(graphs: list[HeteroData], batch_size: int, pack: int = 16) -> Iterator[Batch]:
    """Mini-batches of ``graphs`` in order, as PyG's ``DataLoader`` makes them. ``pack`` batches at
    a time are concatenated once (:class:`~cgc_framework.cache.PackedGraphs`) and sliced: half the
    cost of collating graph by graph. Graphs with different attributes are collated by PyG."""
    step = batch_size * pack
    for start in range(0, len(graphs), step):
        chunk = graphs[start:start + step]
        try:
            packed = PackedGraphs.from_graphs(chunk)
        except ValueError:  # not one layout (graphs not conformed to one schema)
            yield from DataLoader(chunk, batch_size=batch_size)
            continue
        for i in range(0, len(chunk), batch_size):
            yield packed.collate(range(i, min(i + batch_size, len(chunk))))


def load_pretrained(checkpoint: str | Path, *, extra_plugins: tuple[Any, ...] = (),
                    registry: PluginRegistry | None = None,
                    builders: dict[str, dict[str, Any]] | None = None,
                    device: str | torch.device = "cpu") -> Pretrained:
    """Rebuild encoder and task heads from ``checkpoint`` (``torch.load(weights_only=True)``)."""
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    reg = registry or load_registry(extra_plugins)
    schema = GraphSchema.from_dict(ckpt["schema"])
    model = build_model(ckpt, schema, reg)
    model.load_state_dict(ckpt["model"])
    dev = torch.device(device)
    model.to(dev).eval()
    recorded = builders or ckpt.get("builders") or _builders_from_run_dir(path) or {}
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return Pretrained(model, schema, reg, path, meta, dict(recorded), dev)


def _builders_from_run_dir(checkpoint: Path) -> dict[str, dict[str, Any]]:
    cfg = checkpoint.resolve().parent.parent / "config.resolved.yaml"
    if not cfg.is_file():
        return {}
    data = yaml.safe_load(cfg.read_text()) or {}
    mods = (data.get("graph") or {}).get("modalities") or {}
    return {m: {"name": r["builder"], "params": r.get("params") or {}} for m, r in mods.items()}


def _treated_view(batch: HeteroData, cell_types: list[str]) -> HeteroData:
    """Cell nodes carry ``y`` as ``x``; every edge type with exactly one end in a cell type is emptied."""
    view = copy.copy(batch)
    for t in cell_types:
        if view[t].get("y") is None and view[t].num_nodes:
            raise CGCError(f"cell node type '{t}' has no treated features y; use state='control'")
        if view[t].get("y") is not None:
            view[t].x = view[t].y
    return _drop_cell_links(view, cell_types)


def _drop_cell_links(batch: HeteroData, cell_types: list[str]) -> HeteroData:
    """A shallow copy without the edge types that have exactly one end in a cell node type."""
    view = copy.copy(batch)
    cell = set(cell_types)
    for k in view.edge_types:
        if (k[0] in cell) != (k[2] in cell):
            s = view[k]
            s.edge_index = s.edge_index[:, :0]
            for a in ("edge_attr", "edge_attr_cat"):
                if a in s:
                    s[a] = s[a][:0]
    return view


def _mean_readout(z: dict[str, Tensor], batch: HeteroData, types: list[str]) -> Tensor:
    """Per graph, mean over the types present in it of each type's mean embedding: ``[B, D]``."""
    total = count = None
    for t in types:
        r = readout(z[t], batch, t)  # [B, D]
        b = batch[t].get("batch")
        present = (torch.bincount(b, minlength=r.size(0))[: r.size(0)] > 0 if b is not None
                   else torch.full((r.size(0),), z[t].size(0) > 0, device=r.device)).to(r.dtype)
        total = r if total is None else total + r
        count = present if count is None else count + present
    return total / count.clamp(min=1).unsqueeze(-1)  # type: ignore[operator,union-attr]


def load_graphs(path: str | Path) -> list[HeteroData]:
    """Graphs saved as a list of :func:`~cgc_framework.graph.graph_to_dict` (e.g. ``<run>/data/graphs.pt``)."""
    return [graph_from_dict(d) for d in torch.load(path, map_location="cpu", weights_only=True)]


__all__ = ["Pretrained", "load_pretrained", "load_graphs"]
