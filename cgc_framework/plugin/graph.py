"""Graph conventions: the declared schema of an experiment graph and how tensors are stored.

An experiment graph is a PyG :class:`~torch_geometric.data.HeteroData`. Graph builders and edge
sources publish a :class:`GraphSchema` fragment; the run merges the fragments into one schema that
encoders and tasks are constructed from. Storage convention, for every node type ``t`` and every
edge type ``(s, r, d)`` of the schema (present even when a graph has none of them, so that any
list of graphs batches with PyG's ``DataLoader``)::

    data[t].x              float32 [N_t, continuous_dim(t)]   continuous features, in spec order
    data[t].x_cat          int64   [N_t, num_categorical(t)]  categorical indices, in spec order
    data[s, r, d].edge_index     int64   [2, E]
    data[s, r, d].edge_attr      float32 [E, continuous_dim]
    data[s, r, d].edge_attr_cat  int64   [E, num_categorical]

Categorical features take values ``0 .. num_classes - 1``, the vocabulary including its own
"other/unknown" bucket; the index ``num_classes`` is reserved as the MASK token (see
:mod:`cgc_framework.plugin.input_embedding`). Continuous features are in the units their spec states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Literal

if TYPE_CHECKING:  # torch is imported where tensors are made, so that schemas load without it
    import torch
    from torch_geometric.data import HeteroData

from cgc_framework.plugin.roles import Roles, check_roles

EdgeType = tuple[str, str, str]
FeatureKind = Literal["continuous", "categorical"]


@dataclass(frozen=True)
class FeatureSpec:
    """One named feature of a node or edge type.

    Args:
        name: feature name, e.g. ``"atomic_num"``.
        kind: ``"continuous"`` (float columns) or ``"categorical"`` (one int64 column).
        dim: number of float columns of a continuous feature (1 for a scalar).
        num_classes: vocabulary size of a categorical feature, including "other/unknown".
        unit: physical unit of a continuous feature (``"angstrom"``, ``"uM"``), if any.
        description: one line for documentation and ``--dry-run`` listings.
        names: optional name of each column (continuous, ``dim`` names) or of each class
            (categorical, ``num_classes`` names); measured values and node labels are named from
            them (:mod:`cgc_framework.plugin.slots`).
        flags_for: for a continuous feature of 0/1 flags: the name of the continuous feature of the
            same width whose columns the flags mark as measured (1) or absent (0).
    """

    name: str
    kind: FeatureKind
    dim: int = 1
    num_classes: int = 0
    unit: str = ""
    description: str = ""
    names: tuple[str, ...] = ()
    flags_for: str = ""

    def __post_init__(self) -> None:
        if self.kind == "categorical" and self.num_classes < 1:
            raise ValueError(f"categorical feature {self.name!r} needs num_classes >= 1")
        if self.kind == "continuous" and self.dim < 1:
            raise ValueError(f"continuous feature {self.name!r} needs dim >= 1")
        object.__setattr__(self, "names", tuple(self.names))  # lists from JSON -> hashable
        width = self.dim if self.kind == "continuous" else self.num_classes
        if self.names and len(self.names) != width:
            raise ValueError(f"feature {self.name!r} has {len(self.names)} names for {width} "
                             f"{'columns' if self.kind == 'continuous' else 'classes'}")

    @classmethod
    def continuous(cls, name: str, dim: int = 1, unit: str = "", description: str = "", *,
                   names: tuple[str, ...] = (), flags_for: str = "") -> FeatureSpec:
        return cls(name, "continuous", dim=dim, unit=unit, description=description, names=names,
                   flags_for=flags_for)

    @classmethod
    def categorical(cls, name: str, num_classes: int, description: str = "", *,
                    names: tuple[str, ...] = ()) -> FeatureSpec:
        return cls(name, "categorical", num_classes=num_classes, description=description, names=names)


@dataclass(frozen=True)
class _FeatureSet:
    features: tuple[FeatureSpec, ...] = ()

    def __post_init__(self) -> None:
        continuous = {f.name: f for f in self.features if f.kind == "continuous"}
        for f in self.features:
            if not f.flags_for:
                continue
            target = continuous.get(f.flags_for)
            if target is None or target.flags_for or target.dim != f.dim:
                raise ValueError(f"feature {f.name!r} has flags_for={f.flags_for!r}, which must name a continuous "
                                 f"value feature of the same type with the same width ({f.dim}); continuous "
                                 f"features: {', '.join(f'{c.name} ({c.dim})' for c in continuous.values())}")

    @property
    def continuous(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == "continuous")

    @property
    def categorical(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == "categorical")

    @property
    def continuous_dim(self) -> int:
        """Width of ``x`` / ``edge_attr``."""
        return sum(f.dim for f in self.continuous)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """``num_classes`` of each column of ``x_cat`` / ``edge_attr_cat``."""
        return tuple(f.num_classes for f in self.categorical)

    def continuous_slices(self) -> dict[str, slice]:
        """Column range of each continuous feature inside ``x`` / ``edge_attr``."""
        out, start = {}, 0
        for f in self.continuous:
            out[f.name] = slice(start, start + f.dim)
            start += f.dim
        return out


@dataclass(frozen=True)
class NodeTypeSpec(_FeatureSet):
    """A node type: its features and its role.

    Attributes:
        name: the node type (a plugin's own name; see docs/graph-conventions.md for naming advice).
        role: what the type is to tasks and views, one of
            :data:`cgc_framework.plugin.roles.NODE_ROLES` or ``""`` (no role).
        value_name: for ``cell_state`` types, how one measured value is named, as a format string
            over ``{slot}`` (the column name), ``{type}``, ``{node}`` (node index) and the name of
            each categorical feature (the node's class name), e.g. ``"{compartment}_{slot}_{channel}"``
            for CellProfiler-style names. Default: the class names, then the slot, joined by ``_``.
    """

    name: str = ""
    description: str = ""
    role: str = ""
    value_name: str = ""


@dataclass(frozen=True)
class EdgeTypeSpec(_FeatureSet):
    """An edge type ``(src, rel, dst)``: its features and its role (one of
    :data:`cgc_framework.plugin.roles.EDGE_ROLES` or ``""``)."""

    src: str = ""
    rel: str = ""
    dst: str = ""
    description: str = ""
    role: str = ""

    @property
    def key(self) -> EdgeType:
        return (self.src, self.rel, self.dst)


@dataclass(frozen=True)
class GraphSchema:
    """Node and edge types of a (fragment of an) experiment graph, with their features."""

    node_types: dict[str, NodeTypeSpec] = field(default_factory=dict)
    edge_types: dict[EdgeType, EdgeTypeSpec] = field(default_factory=dict)

    @classmethod
    def of(cls, nodes: Iterable[NodeTypeSpec] = (), edges: Iterable[EdgeTypeSpec] = ()) -> GraphSchema:
        return cls({n.name: n for n in nodes}, {e.key: e for e in edges})

    def merge(self, other: GraphSchema, *, where: str = "") -> GraphSchema:
        """Union of two fragments; a type defined twice must be defined identically."""
        nodes, edges = dict(self.node_types), dict(self.edge_types)
        for name, spec in other.node_types.items():
            if name in nodes and nodes[name] != spec:
                raise ValueError(f"node type {name!r} is declared twice with different "
                                 f"{_differences(nodes[name], spec)}{where}")
            nodes[name] = spec
        for key, espec in other.edge_types.items():
            if key in edges and edges[key] != espec:
                raise ValueError(f"edge type {key!r} is declared twice with different "
                                 f"{_differences(edges[key], espec)}{where}")
            edges[key] = espec
        merged = GraphSchema(nodes, edges)
        merged.check_edges()
        check_roles({n: s.role for n, s in other.node_types.items()},
                    {k: s.role for k, s in other.edge_types.items()}, where)
        return merged

    def check_edges(self) -> None:
        for key in self.edge_types:
            for end in (key[0], key[2]):
                if end not in self.node_types:
                    raise ValueError(f"edge type {key!r} refers to undeclared node type {end!r}")

    @cached_property
    def roles(self) -> Roles:
        """The node and edge types of this schema by role (:class:`~cgc_framework.plugin.roles.Roles`)."""
        return Roles.of(self)

    def metadata(self) -> tuple[list[str], list[EdgeType]]:
        """``(node_types, edge_types)`` as PyG's heterogeneous operators expect."""
        return list(self.node_types), list(self.edge_types)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (written to ``schema.json`` in the run directory)."""

        def feats(fs: _FeatureSet) -> list[dict[str, Any]]:
            return [asdict(f) for f in fs.features]

        return {
            "node_types": {n: {"description": s.description, "role": s.role, "value_name": s.value_name,
                               "features": feats(s),
                               "x_dim": s.continuous_dim, "x_cat_cardinalities": list(s.cardinalities)}
                           for n, s in self.node_types.items()},
            "edge_types": {"|".join(k): {"description": s.description, "role": s.role, "features": feats(s),
                                         "edge_attr_dim": s.continuous_dim,
                                         "edge_attr_cat_cardinalities": list(s.cardinalities)}
                           for k, s in self.edge_types.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphSchema:
        """Inverse of :meth:`to_dict` (used to rebuild models from checkpoints)."""
        nodes = [NodeTypeSpec(tuple(FeatureSpec(**f) for f in v["features"]), name=n,
                              description=v.get("description", ""), role=v.get("role", ""),
                              value_name=v.get("value_name", "")) for n, v in d["node_types"].items()]
        edges = []
        for k, v in d["edge_types"].items():
            src, rel, dst = k.split("|")
            edges.append(EdgeTypeSpec(tuple(FeatureSpec(**f) for f in v["features"]), src=src, rel=rel,
                                      dst=dst, description=v.get("description", ""), role=v.get("role", "")))
        return cls.of(nodes, edges)

    # -- tensors ----------------------------------------------------------------------------

    def conform(self, data: HeteroData) -> HeteroData:
        """Add empty tensors for every schema type ``data`` lacks, so graphs batch together.

        In place; returns ``data``. Attributes are set through each store's mapping (as
        :func:`hetero_data` does): PyG's attribute path made this a third of embedding a molecule.
        Types ``data`` lacks entirely share one set of empty (zero-row) tensors."""
        import torch

        nodes, edges = data._node_store_dict, data._edge_store_dict
        for name, spec in self.node_types.items():
            if name not in nodes:
                data.get_node_store(name)._mapping.update(_empty_store(spec))
                continue
            m = nodes[name]._mapping
            if "x" not in m:
                m["x"] = torch.zeros(int(m.get("num_nodes") or 0), spec.continuous_dim)
            n = m["x"].size(0)
            if "x_cat" not in m:
                m["x_cat"] = torch.zeros(n, len(spec.categorical), dtype=torch.long)
            m["num_nodes"] = n
        for key, espec in self.edge_types.items():
            if key not in edges:
                data.get_edge_store(*key)._mapping.update(_empty_store(espec))
                continue
            m = edges[key]._mapping
            if "edge_index" not in m:
                m["edge_index"] = torch.zeros(2, 0, dtype=torch.long)
            e = m["edge_index"].size(1)
            if "edge_attr" not in m:
                m["edge_attr"] = torch.zeros(e, espec.continuous_dim)
            if "edge_attr_cat" not in m:
                m["edge_attr_cat"] = torch.zeros(e, len(espec.categorical), dtype=torch.long)
        return data

    def validate(self, data: HeteroData, *, where: str = "graph") -> None:
        """Raise :class:`SchemaViolation` (a ``ValueError``) naming the first tensor that breaks
        the storage convention; its ``type_key`` is the offending node or edge type."""
        import torch

        for name, spec in self.node_types.items():
            if name not in data.node_types:
                continue
            try:
                s = data[name]
                n = s.x.size(0)
                _expect(s.x, (n, spec.continuous_dim), torch.float32, f"{where}: {name}.x")
                _expect(s.x_cat, (n, len(spec.categorical)), torch.long, f"{where}: {name}.x_cat")
                if not torch.isfinite(s.x).all():
                    raise ValueError(f"{where}: {name}.x contains NaN or inf")
                for col, card in enumerate(spec.cardinalities):
                    if n and (s.x_cat[:, col].min() < 0 or s.x_cat[:, col].max() >= card):
                        raise ValueError(f"{where}: {name}.x_cat column {col} "
                                         f"({spec.categorical[col].name}) outside 0..{card - 1}")
            except ValueError as exc:
                raise SchemaViolation(str(exc), name) from None
        for key, espec in self.edge_types.items():
            if key not in data.edge_types:
                continue
            try:
                s = data[key]
                e = s.edge_index.size(1)
                _expect(s.edge_index, (2, e), torch.long, f"{where}: {key}.edge_index")
                _expect(s.edge_attr, (e, espec.continuous_dim), torch.float32, f"{where}: {key}.edge_attr")
                _expect(s.edge_attr_cat, (e, len(espec.categorical)), torch.long,
                        f"{where}: {key}.edge_attr_cat")
                if e:
                    for end, pos in ((key[0], 0), (key[2], 1)):
                        if s.edge_index[pos].max() >= data[end].x.size(0):
                            raise ValueError(f"{where}: {key}.edge_index points past the {end} nodes")
            except ValueError as exc:
                raise SchemaViolation(str(exc), key) from None


def _differences(a: NodeTypeSpec | EdgeTypeSpec, b: NodeTypeSpec | EdgeTypeSpec) -> str:
    """Which fields of two declarations of one type differ (for the merge error)."""
    fields = [f for f in ("features", "role", "value_name", "description") if getattr(a, f, None) != getattr(b, f, None)]
    shown = {"features": "features", "role": f"roles ({a.role!r} vs {b.role!r})",
             "value_name": "value names", "description": "descriptions"}
    return " and ".join(shown[f] for f in fields) or "declarations"


class SchemaViolation(ValueError):
    """A graph's tensor breaks the storage convention; ``type_key`` is the node type (``str``) or
    edge type (``(src, rel, dst)``) it belongs to."""

    def __init__(self, message: str, type_key: str | EdgeType):
        super().__init__(message)
        self.type_key = type_key


@lru_cache(maxsize=None)
def _empty_store(spec: NodeTypeSpec | EdgeTypeSpec) -> dict[str, Any]:
    """The attributes of a node or edge type a graph lacks: zero-row tensors, shared by every graph
    (nothing writes into a zero-row tensor; setting an attribute replaces it)."""
    import torch

    cat = torch.zeros(0, len(spec.categorical), dtype=torch.long)
    if isinstance(spec, EdgeTypeSpec):
        return {"edge_index": torch.zeros(2, 0, dtype=torch.long),
                "edge_attr": torch.zeros(0, spec.continuous_dim), "edge_attr_cat": cat}
    return {"x": torch.zeros(0, spec.continuous_dim), "x_cat": cat, "num_nodes": 0}


def _expect(t: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype, what: str) -> None:
    if tuple(t.shape) != shape or t.dtype != dtype:
        raise ValueError(f"{what} has shape {tuple(t.shape)} and dtype {t.dtype}; "
                         f"the schema requires {shape} and {dtype}")


def graph_to_dict(data: HeteroData) -> dict[str, dict[str, torch.Tensor]]:
    """Plain ``{type: {attr: tensor}}`` form (edge types as ``"src|rel|dst"``) that
    ``torch.save`` stores and ``torch.load(..., weights_only=True)`` reads back."""
    import torch

    out: dict[str, dict[str, torch.Tensor]] = {}
    for store in data.node_stores:
        out[store._key] = {k: v for k, v in store.items() if isinstance(v, torch.Tensor)}
    for store in data.edge_stores:
        out["|".join(store._key)] = {k: v for k, v in store.items() if isinstance(v, torch.Tensor)}
    graph_attrs = {k: v for k, v in data._global_store.items() if isinstance(v, torch.Tensor)}
    if graph_attrs:
        out["__graph__"] = graph_attrs
    return out


def hetero_data(stores: dict[str | EdgeType, dict[str, Any]]) -> HeteroData:
    """``HeteroData(stores)`` built without PyG's per-attribute bookkeeping.

    ``stores`` maps a node type (``str``) or an edge type (``(src, rel, dst)``) to its attributes,
    e.g. ``{"atom": {"x": ..., "num_nodes": 5}, ("atom", "bond", "atom"): {"edge_index": ...}}``.
    The result equals ``HeteroData(stores)`` (same stores, keys, values and batching; tested). Why:
    PyG's ``__setattr__`` path costs ~3 us per attribute, which is a third of building a small
    molecule graph; here each store gets its attributes in one dictionary update. Values must not
    be ``None`` (PyG would drop them; leave such keys out).
    """
    from torch_geometric.data import HeteroData

    data = HeteroData()
    for key, attrs in stores.items():
        store = data.get_edge_store(*key) if isinstance(key, tuple) else data.get_node_store(key)
        store._mapping.update(attrs)
    return data


def graph_from_dict(d: dict[str, dict[str, torch.Tensor]]) -> HeteroData:
    """Inverse of :func:`graph_to_dict`."""
    data = hetero_data({(tuple(key.split("|")) if "|" in key else key):  # type: ignore[misc]
                        (attrs if "|" in key or "x" not in attrs else {**attrs, "num_nodes": attrs["x"].size(0)})
                        for key, attrs in d.items() if key != "__graph__"})
    for k, v in d.get("__graph__", {}).items():
        data[k] = v
    return data


def readout(z: torch.Tensor, data: HeteroData, node_type: str) -> torch.Tensor:
    """Mean of the embeddings ``z`` (``[N_t, D]``) of ``node_type`` per experiment graph.

    Returns ``[num_graphs, D]``; a graph with no node of that type gets a zero row. Works for a
    single graph (no ``batch`` vector) and for PyG batches.
    """
    import torch
    from torch_geometric.utils import scatter

    store = data[node_type]
    num_graphs = int(getattr(data, "num_graphs", 1) or 1)
    batch = store.get("batch")
    if batch is None:
        batch = torch.zeros(z.size(0), dtype=torch.long, device=z.device)
    return scatter(z, batch, dim=0, dim_size=num_graphs, reduce="mean")
