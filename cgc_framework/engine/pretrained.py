"""Embeddings from a pretrained checkpoint: what evaluators, notebooks and ``cgc-embed`` call.

::

    from cgc_framework import load_pretrained
    pre = load_pretrained("runs/default-.../checkpoints/final.pt")
    mol = pre.embed_smiles(["CCO", "c1ccccc1O"])          # [2, hidden_dim] float32
    cells = pre.embed_graphs(graphs, level="cell")          # [len(graphs), hidden_dim]

Graphs are built by the *registered* graph builders, by name, exactly as pretraining built them:
the builder of each modality is taken from the checkpoint's ``builders`` entry when it has one, else
from the run directory's ``config.resolved.yaml`` (``<run>/checkpoints/<file>.pt`` ->
``<run>/config.resolved.yaml``); an explicit ``builder=`` argument overrides both.

Levels, from the roles of the checkpoint's schema (:mod:`cgc_framework.plugin.roles`), through the
encoder's own :meth:`~cgc_framework.plugin.contracts.Encoder.readout`:

- ``molecule``: the readout of the ``molecule``-role node types (the compound node), encoded in the
  control view (no treatment edges to cell nodes), so a compound's embedding is the same whether it
  comes from a SMILES or from any experiment graph it occurs in;
- ``cell``: the readout of the ``cell_state`` node types. With ``state="treated"`` (default) the
  cell-state nodes are encoded with their treated features ``y`` and without treatment edges (the
  view the contrastive task aligns with molecules); with ``state="control"`` they are encoded as
  stored (``x``, edges kept).

Embeddings are the encoder's output space (``hidden_dim`` wide), in eval mode, without gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import torch
import yaml
from torch import Tensor
from torch_geometric.data import Batch, HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.engine.checkpoint import load_checkpoint, load_model, resolve_checkpoint
from cgc_framework.engine.featurize import build_values
from cgc_framework.engine.registry import PluginRegistry, load_registry
from cgc_framework.engine.shards import PackedGraphs
from cgc_framework.engine.training import PretrainModel
from cgc_framework.plugin.errors import CGCError
from cgc_framework.plugin.graph import GraphSchema, graph_from_dict
from cgc_framework.plugin.records import RecordError
from cgc_framework.plugin.roles import CELL_STATE, MOLECULE, control_view, treated_view

LEVELS = {"molecule": MOLECULE, "cell": CELL_STATE}
"""Embedding level -> the node role whose types it reads out."""


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
        ref = self.builders.get(modality)
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

    def build_packed(self, values: Sequence[Any], modality: str = "molecule", *, chunk: int = 4096
                     ) -> tuple[PackedGraphs, list[int]]:
        """The graphs of ``values`` packed into one :class:`~cgc_framework.engine.shards.PackedGraphs`,
        built ``chunk`` values at a time, and the positions of the values the builder rejected. Packed,
        a drug-like molecule takes ~5 KB (its tensors); as a ``HeteroData`` object, ~60 KB."""
        parts, rejected = [], []
        for start in range(0, len(values), chunk):
            built = self.build(values[start:start + chunk], modality, skip_invalid=True)
            rejected += [start + i for i, g in enumerate(built) if g is None]
            parts.append(PackedGraphs.from_graphs([g for g in built if g is not None]))
        return PackedGraphs.concat(parts), rejected

    @torch.no_grad()
    def embed_graphs(self, graphs: Sequence[HeteroData] | PackedGraphs, level: Literal["molecule", "cell"] = "molecule", *,
                     state: Literal["treated", "control"] = "treated", batch_size: int = 256) -> Tensor:
        """``[len(graphs), hidden_dim]`` embeddings at ``level`` (see the module docstring)."""
        if level not in LEVELS:
            raise ValueError(f"level must be 'molecule' or 'cell', not {level!r}")
        roles = self.schema.roles
        try:
            types = roles.require(LEVELS[level], f"{level}-level embeddings", self.schema)
        except ValueError as exc:
            raise CGCError(f"{self.checkpoint}: {exc}") from None
        self.model.eval()
        encoder = self.model.encoder
        rows = []
        batches = (graphs.collate(range(i, min(i + batch_size, len(graphs)))) for i in range(0, len(graphs), batch_size)) \
            if isinstance(graphs, PackedGraphs) else _batches(graphs, batch_size)
        for batch in batches:
            batch = batch.to(self.device)
            if level == "cell" and state == "treated":
                try:
                    batch = treated_view(batch, roles.cell_state, roles.treatment, "state='treated'")
                except ValueError as exc:
                    raise CGCError(f"{exc}; use state='control'") from None
            elif level == "molecule":
                batch = control_view(batch, roles.treatment)
            rows.append(encoder.readout(encoder(batch), batch, types).cpu())
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


def _batches(graphs: Sequence[HeteroData], batch_size: int, pack: int = 16) -> Iterator[Batch]:
    """Mini-batches of ``graphs`` in order, as PyG's ``DataLoader`` makes them. ``pack`` batches at
    a time are concatenated once (:class:`~cgc_framework.engine.cache.PackedGraphs`) and sliced: half the
    cost of collating graph by graph. Graphs with different attributes are collated by PyG. Only
    ``pack`` batches of graphs are read at a time, so a lazy sequence (shards on disk) is streamed."""
    step = batch_size * pack
    for start in range(0, len(graphs), step):
        chunk = [graphs[i] for i in range(start, min(start + step, len(graphs)))]
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
    """Rebuild encoder and task heads from ``checkpoint`` — a checkpoint file, or the name of a
    registered pretrained model such as ``"default"`` (``cgc-plugins`` lists them) — with
    ``torch.load(weights_only=True)``; a missing, damaged or foreign file raises
    :class:`~cgc_framework.engine.checkpoint.CheckpointError`."""
    reg = registry or load_registry(extra_plugins)
    path = resolve_checkpoint(checkpoint, reg)
    ckpt = load_checkpoint(path)
    model, meta = load_model(ckpt, reg, device=device)
    recorded = builders or ckpt.get("builders") or _builders_from_run_dir(path) or {}
    return Pretrained(model, GraphSchema.from_dict(ckpt["schema"]), reg, path, meta, dict(recorded),
                      torch.device(device))


def _builders_from_run_dir(checkpoint: Path) -> dict[str, dict[str, Any]]:
    cfg = checkpoint.resolve().parent.parent / "config.resolved.yaml"
    if not cfg.is_file():
        return {}
    data = yaml.safe_load(cfg.read_text()) or {}
    mods = (data.get("graph") or {}).get("modalities") or {}
    return {m: {"name": r["builder"], "params": r.get("params") or {}} for m, r in mods.items()}


def load_graphs(path: str | Path) -> Sequence[HeteroData]:
    """The graphs of a run's shards (``<run>/data/shards``, the directory or its ``manifest.json``), of
    one packed shard file, or of a list saved with :func:`~cgc_framework.plugin.graph.graph_to_dict`.
    Shards are read lazily (:class:`~cgc_framework.engine.shardset.ShardedGraphs`)."""
    from cgc_framework.engine.shardset import MANIFEST, ShardedGraphs

    path = Path(path)
    if path.is_dir() or path.name == MANIFEST:
        return ShardedGraphs(path if path.is_dir() else path.parent)
    blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(blob, dict) and "graphs" in blob and "format" in blob:
        return list(PackedGraphs.load(path, mmap=True))
    return [graph_from_dict(d) for d in blob]


__all__ = ["Pretrained", "load_pretrained", "load_graphs"]
