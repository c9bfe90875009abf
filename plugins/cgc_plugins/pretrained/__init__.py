"""Pretrained weights shipped with the package, and the command that ships them.

``load_pretrained("default")``, ``cgc-embed --model default`` and ``model.init.checkpoint: default``
find the weights through the ``register_pretrained_models`` hook, exactly as a third-party
distribution would register its own. Each model lives in its own folder here: ``model.pt`` (a
cgc-framework checkpoint without optimizer state; ``torch.load(..., weights_only=True)``), the
``config.yaml`` that produced it and a ``MODEL_CARD.md`` (data checksums, compute, evaluation).

``cgc ship-weights RUN_DIR --name NAME`` turns a finished run into such a folder.
"""

from pathlib import Path

from cgc_framework.plugin import hookimpl

HERE = Path(__file__).resolve().parent


def default_weights(params: None = None) -> Path:
    """The ``default`` model: the molecule encoder pretrained on the MOSES corpus (see its card)."""
    return HERE / "default" / "model.pt"


@hookimpl
def register_pretrained_models(register):
    register("default", default_weights,
             description="molecule_gin (5 GINEConv layers, 128 wide, sum readout) pretrained on a MOSES/ZINC corpus "
                         "(masked atoms/bonds, RDKit descriptors, ECFP4 bits); see pretrained/default/MODEL_CARD.md")


@hookimpl
def register_commands(register):
    register("ship-weights", "cgc_plugins.pretrained.ship:main",
             description="turn a finished run into a shippable pretrained model folder (model.pt, config, card)")
