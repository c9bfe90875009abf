"""Versions of the packages and plugin distributions a run used (recorded in every run)."""

from __future__ import annotations

import platform
from importlib import metadata

CORE_PACKAGES = ("cgc-framework", "torch", "torch-geometric", "ray", "rdkit", "biopython", "pluggy",
                 "deepchem", "scikit-learn", "numpy", "pandas", "pydantic")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in CORE_PACKAGES + tuple(extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
