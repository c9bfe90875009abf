"""Helpers for a component's params model (the pydantic model passed to ``register(..., params=)``).

A component's ``params:`` mapping in ``registry.yaml`` is validated by its own model before any
work starts; unknown keys should be errors (``model_config = ConfigDict(extra="forbid")``, or
subclass :class:`ParamsModel`). A field annotated :data:`ExistingPath` must name an existing file
or directory; a relative path is taken relative to the YAML file's directory, and the error names
the resolved path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


class ParamsModel(BaseModel):
    """Base for params models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _existing_path(value: Path, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.exists():
        raise ValueError(f"no such file or directory: {path}")
    return path.resolve()


ExistingPath = Annotated[Path, AfterValidator(_existing_path)]
"""A path that must exist; relative paths are taken relative to the YAML file's directory."""


__all__ = ["ExistingPath", "ParamsModel"]
