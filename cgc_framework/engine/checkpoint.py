"""The checkpoint format, and the one way back from a checkpoint to a model.

A checkpoint is one ``torch.save`` file of plain values and tensors, read with
``torch.load(path, weights_only=True)`` (nothing executable is unpickled)::

    {"format": "cgc-checkpoint/2",
     "model": state_dict of PretrainModel (encoder.* and tasks.<key>.*),
     "encoder": {"name", "params"}, "tasks": {key: {"name", "params"}},   # components, by registry name
     "schema": GraphSchema.to_dict() (node/edge types, features and roles),
     "builders": {modality: {"name", "params"}}, "config_hash", "versions", "seed",
     "stage_index", "stage", "global_step", "position", "rng_states", ["optimizer"]}

The model is rebuilt from the *registered* components named in it (:func:`build_model`), so a
checkpoint needs the plugins that trained it installed, never their code pickled.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cgc_framework.plugin.errors import CGCError
from cgc_framework.plugin.graph import GraphSchema

if TYPE_CHECKING:
    from cgc_framework.engine.registry import PluginRegistry
    from cgc_framework.engine.training import PretrainModel

CHECKPOINT_FORMAT = "cgc-checkpoint/2"
"""Format marker. Version 2 added node/edge roles to the schema; version 1 files are refused."""

REQUIRED = ("model", "encoder", "tasks", "schema")
"""Entries every checkpoint has (the weights and what rebuilds the model around them)."""


class CheckpointError(CGCError):
    """A file is missing, damaged, or not a cgc-framework checkpoint of this version."""


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(meta, format=CHECKPOINT_FORMAT, model=model.state_dict())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and check its format marker.

    Raises:
        CheckpointError: the file does not exist, is truncated or damaged, is not a torch file, or
            is not a cgc-framework checkpoint of this format; the message names the file and what
            to do instead.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file. Checkpoints are written to "
                              f"<run>/checkpoints/ (final.pt, stage<k>_<name>.pt)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} cannot be read as a cgc-framework checkpoint: empty file (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text here proposes unsafe loading: never relay it
        raise CheckpointError(
            f"{path} cannot be read as a cgc-framework checkpoint: it holds objects other than tensors and plain "
            f"values (a pickle, a NumPy file or a foreign torch file), which are never unpickled. Use a checkpoint "
            f"written by cgc-run (<run>/checkpoints/)") from None
    except Exception as exc:  # truncated zip, not a torch file at all
        raise CheckpointError(
            f"{path} cannot be read as a cgc-framework checkpoint ({type(exc).__name__}: {_first_line(exc)}). "
            f"The file is damaged or truncated, or is not a checkpoint: use another checkpoint of the "
            f"run (<run>/checkpoints/), or `cgc-run --resume <run>` to continue training") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        hint = (" (written by an older cgc-framework whose schema has no node roles: re-run the "
                "pretraining with this version)" if found == "cgc-checkpoint/1" else "")
        raise CheckpointError(f"{path} is not a cgc-framework checkpoint of format {CHECKPOINT_FORMAT} "
                              f"(found {found!r}){hint}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is a damaged cgc-framework checkpoint: it lacks the entries {missing} "
                              f"(a complete one has {', '.join(REQUIRED)})")
    return ckpt


def _first_line(exc: BaseException) -> str:
    """The first line of an error message, without terminal colour codes, whole sentences kept."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_checkpoint(name_or_path: str | Path, registry: PluginRegistry, base_dir: Path | None = None) -> Path:
    """A checkpoint path: an existing file (relative to ``base_dir``), else the file of the pretrained
    model registered under that name (``register_pretrained_models``). ``CheckpointError`` names both."""
    path = Path(name_or_path).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_file():
        return path
    if str(name_or_path) in registry.names("pretrained_model"):
        info = registry.get("pretrained_model", str(name_or_path))
        with registry.guard(info, "locating its weights"):
            shipped = Path(info.factory(None))
        if not shipped.is_file():
            raise CheckpointError(f"pretrained model '{name_or_path}' ({info.origin}) names {shipped}, which does "
                                  f"not exist: reinstall {info.distribution}")
        return shipped
    names = ", ".join(registry.names("pretrained_model")) or "none installed"
    raise CheckpointError(f"{name_or_path}: no such checkpoint file, and no pretrained model of that name "
                          f"(pretrained models: {names})")


def init_from(model: torch.nn.Module, checkpoint: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """Copy into ``model`` every tensor of ``checkpoint`` whose name starts with one of ``parts``
    (``encoder``, ``tasks``) and whose name and shape match. Returns what happened:
    ``{"loaded": n, "shape_mismatch": [names], "not_in_checkpoint": [names]}``."""
    own = model.state_dict()
    theirs = checkpoint["model"]
    wanted = [k for k in own if k.split(".", 1)[0] in parts]
    loaded = {k: theirs[k] for k in wanted if k in theirs and theirs[k].shape == own[k].shape}
    model.load_state_dict({**own, **loaded})
    return {"loaded": len(loaded),
            "shape_mismatch": sorted(k for k in wanted if k in theirs and k not in loaded),
            "not_in_checkpoint": sorted(k for k in wanted if k not in theirs)}


def build_model(components: dict[str, Any], schema: GraphSchema, registry: PluginRegistry) -> PretrainModel:
    """Construct encoder and tasks (fresh weights) from the component names/params recorded in a
    checkpoint or a worker config: ``{"encoder": {"name", "params"}, "tasks": {key: {...}}}``."""
    from cgc_framework.engine.training import PretrainModel

    enc = components["encoder"]
    params = registry.validate_params("encoder", enc["name"], enc["params"], key="checkpoint encoder")
    encoder = registry.create("encoder", enc["name"], params, schema=schema)
    tasks = {}
    for key, t in components["tasks"].items():
        params = registry.validate_params("pretraining_task", t["name"], t["params"], key=f"checkpoint task {key}")
        tasks[key] = registry.create("pretraining_task", t["name"], params, schema=schema,
                                     hidden_dim=encoder.hidden_dim)
    return PretrainModel(encoder, tasks)


def load_model(checkpoint: str | Path | dict[str, Any], registry: PluginRegistry, *,
               trained: bool = True, device: str | torch.device = "cpu") -> tuple[PretrainModel, dict[str, Any]]:
    """The model of a checkpoint, in eval mode on ``device``, with the checkpoint's other entries.

    ``trained=False`` gives the same architecture with fresh weights drawn from torch's global
    generator (seed it first): the "same encoder untrained" baseline. Returns ``(model, meta)``;
    ``meta`` is the checkpoint without its weights.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    model = build_model(ckpt, GraphSchema.from_dict(ckpt["schema"]), registry)
    if trained:
        model.load_state_dict(ckpt["model"])
    model.to(torch.device(device)).eval()
    return model, {k: v for k, v in ckpt.items() if k != "model"}


__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "build_model", "init_from", "load_checkpoint", "load_model",
           "resolve_checkpoint", "save_checkpoint"]
