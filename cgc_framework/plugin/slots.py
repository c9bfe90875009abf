"""Named measured values of cell-state nodes: the one naming of a response's features.

A *value slot* is one column of one cell-state node's ``x`` (and ``y``): e.g. the mean intensity
of the Mito channel in the Cells compartment. Response evaluators compare predicted and measured
changes slot by slot, and the what-if reports them; both name them here, from what the cell
builder declared in its schema (never from a plugin's node-type names):

- a continuous feature's ``names`` name its columns (the *slot*); a feature without names gives
  ``<feature>_<i>`` (or the feature name when it has one column);
- a continuous feature with ``flags_for="<value feature>"`` holds 1/0 flags: a value slot whose
  flag is 0 was not measured and is left out; flag features are never values themselves;
- each categorical feature with ``names`` labels the node with its class name (the compartment,
  the channel);
- the node type's ``value_name`` format joins them (``"{compartment}_{slot}_{channel}"`` gives
  CellProfiler's own names, e.g. ``Cells_Intensity_MeanIntensity_Mito``).

Names are made unique within one graph: a repeat (two nodes in an "other" class) gets
``#<node type><node index>`` appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch_geometric.data import HeteroData

from cgc_framework.plugin.graph import FeatureSpec, GraphSchema, NodeTypeSpec


@dataclass
class ValueSlots:
    """The measured value slots of one cell-state node type in one graph.

    Attributes:
        node_type: the node type.
        rows: ``[F]`` int64 node index of each value.
        cols: ``[F]`` int64 column of each value in ``x`` / ``y``.
        slot: ``[F]`` the column's name.
        name: ``[F]`` the value's unique name (see the module docstring).
        labels: categorical feature name -> ``[F]`` the node's class name.
    """

    node_type: str
    rows: np.ndarray
    cols: np.ndarray
    slot: list[str]
    name: list[str]
    labels: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.name)

    def take(self, values: np.ndarray) -> np.ndarray:
        """``[F]`` the slots' entries of a node-type matrix ``[N_t, x_dim]`` (``x``, ``y``, a prediction)."""
        return np.asarray(values)[self.rows, self.cols]


def column_names(spec: FeatureSpec) -> list[str]:
    """Names of a continuous feature's columns (its ``names``, else ``<name>_<i>`` / ``<name>``)."""
    if spec.names:
        return list(spec.names)
    return [spec.name] if spec.dim == 1 else [f"{spec.name}_{i}" for i in range(spec.dim)]


def class_name(spec: FeatureSpec, index: int) -> str:
    """The class name of a categorical value (its index as text when the feature has no names)."""
    return spec.names[index] if 0 <= index < len(spec.names) else str(index)


def _format(spec: NodeTypeSpec) -> str:
    if spec.value_name:
        return spec.value_name
    named = [c.name for c in spec.categorical if c.names]
    return "_".join([f"{{{n}}}" for n in named] + ["{slot}"]) if named else "{type}{node}_{slot}"


def value_slots(schema: GraphSchema, graph: HeteroData, node_types: Sequence[str], *,
                measured_in: Sequence[str] = ("x",)) -> list[ValueSlots]:
    """The value slots of ``graph``'s nodes of ``node_types`` that are measured in every attribute
    of ``measured_in`` (``("x",)``: the control state; ``("x", "y")``: control and treated), in
    node-type, feature, node, column order. Types without nodes in ``graph`` are left out."""
    out: list[ValueSlots] = []
    seen: set[str] = set()
    for t in node_types:
        if t not in graph.node_types or not int(graph[t].num_nodes or 0):
            continue
        spec = schema.node_types[t]
        store = graph[t]
        n = int(store.num_nodes)
        slices = spec.continuous_slices()
        flags = {f.flags_for: slices[f.name] for f in spec.continuous if f.flags_for}
        x_cat = store.x_cat.cpu().numpy()
        node_labels = [{c.name: class_name(c, int(x_cat[i, k])) for k, c in enumerate(spec.categorical)}
                       for i in range(n)]
        fmt = _format(spec)
        rows, cols, slot, name = [], [], [], []
        labels: dict[str, list[str]] = {c.name: [] for c in spec.categorical}
        for f in spec.continuous:
            if f.flags_for:
                continue
            sl, names = slices[f.name], column_names(f)
            measured = np.ones((n, f.dim), dtype=bool)
            if f.name in flags:
                for attr in measured_in:
                    values = store.get(attr)
                    if values is not None:
                        measured &= values[:, flags[f.name]].cpu().numpy() > 0.5
            for i in range(n):
                for j in np.flatnonzero(measured[i]):
                    value = fmt.format(slot=names[j], type=t, node=i, **node_labels[i])
                    if value in seen:
                        value = f"{value}#{t}{i}"
                    seen.add(value)
                    rows.append(i)
                    cols.append(sl.start + int(j))
                    slot.append(names[j])
                    name.append(value)
                    for c in spec.categorical:
                        labels[c.name].append(node_labels[i][c.name])
        out.append(ValueSlots(t, np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), slot, name,
                              labels))
    return out


__all__ = ["ValueSlots", "class_name", "column_names", "value_slots"]
