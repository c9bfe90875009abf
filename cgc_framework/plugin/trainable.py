"""The contracts of components with weights: encoders and pretraining tasks (``torch.nn.Module``s).

Importable from :mod:`cgc_framework.plugin.contracts` and :mod:`cgc_framework.plugin` as well.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn
from torch_geometric.data import HeteroData

from cgc_framework.plugin.roles import mean_readout


class Encoder(nn.Module, ABC):
    """A heterogeneous GNN. ``hidden_dim`` is the width of every output embedding."""

    hidden_dim: int

    @abstractmethod
    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        """Map a (batched) graph to ``{node_type: Tensor[N_t, hidden_dim]}`` for every node type
        of the schema the encoder was built with (an empty ``[0, hidden_dim]`` tensor for a type
        without nodes)."""

    def readout(self, z: dict[str, Tensor], data: HeteroData, node_types: Sequence[str]) -> Tensor:
        """Graph-level embeddings ``[num_graphs, hidden_dim]`` of ``node_types`` from the output
        ``z`` of :meth:`forward` on ``data``. Tasks, embeddings, evaluators and the what-if take
        molecule- and cell-level embeddings from here (``node_types`` = the schema's ``molecule``
        or ``cell_state`` types). Default: per graph, the mean over the types of each type's mean
        node embedding (:func:`~cgc_framework.plugin.roles.mean_readout`); an encoder with its
        own pooling (a sum over atoms, attention) overrides it."""
        return mean_readout(z, data, node_types)


@dataclass
class TaskOutput:
    """What a pretraining task returns for one batch.

    Attributes:
        loss: scalar tensor, mean over the batch, differentiable w.r.t. the encoder and the task.
        logs: named scalars (e.g. per node type losses) written to the metrics file as
            ``<task>/<name>``; detached by the framework.
    """

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


class PretrainingTask(nn.Module, ABC):
    """A self-supervised objective with its own heads."""

    @abstractmethod
    def forward(self, batch: HeteroData, encoder: Encoder) -> TaskOutput:
        """Compute the loss on ``batch``; must not modify ``batch`` in place (clone what you
        corrupt). Randomness must come from ``torch``'s global generator so seeded runs repeat."""


class ResponsePredictor(PretrainingTask):
    """A task whose head predicts the treated state of the cell-state nodes from the control state
    and the intervention (the causal task). Response evaluators and the what-if find it with
    :func:`response_head` and call :meth:`predict`."""

    #: graph attribute holding the intervention's dose (uM) per experiment graph
    dose_attr: str = "dose_um"

    @abstractmethod
    def predict(self, batch: HeteroData, encoder: Encoder) -> dict[str, Tensor]:
        """Predicted treated features ``{cell-state type: [N_t, x_dim]}`` for the types with nodes
        in ``batch``; never reads ``y``."""


def response_head(model: nn.Module, key: str | None = None) -> tuple[str, ResponsePredictor]:
    """The response-predicting task of a model (``model.tasks``): the one named ``key``, else the
    only :class:`ResponsePredictor` among its tasks. ``ValueError`` says which tasks there are."""
    tasks: dict[str, nn.Module] = dict(getattr(model, "tasks", {}))
    if key is not None:
        if not isinstance(tasks.get(key), ResponsePredictor):
            raise ValueError(f"task '{key}' is not a response-predicting (causal) head; tasks: "
                             f"{', '.join(f'{k} ({type(t).__name__})' for k, t in tasks.items()) or 'none'}")
        return key, tasks[key]  # type: ignore[return-value]
    found = [k for k, t in tasks.items() if isinstance(t, ResponsePredictor)]
    if len(found) != 1:
        raise ValueError(
            f"the model needs exactly one response-predicting (causal) task head; found "
            f"{', '.join(found) or 'none'} among {', '.join(tasks) or 'no tasks'}: "
            + ("name one (task=KEY)" if found else "pretrain with a causal task"))
    return found[0], tasks[found[0]]  # type: ignore[return-value]


__all__ = ["Encoder", "PretrainingTask", "ResponsePredictor", "TaskOutput", "response_head"]
