"""``cgc-plugin new NAME --kind KIND``: write a ready-to-install plugin distribution.

Every kind of component has a template: ``dataset``, ``modality`` (a modality and its graph
builder), ``edge_source``, ``encoder``, ``task`` (a pretraining task), ``evaluator`` and
``command`` (a ``cgc NAME`` command). The generated project ``cgc-<name>/`` has

- ``pyproject.toml`` with the ``cgc_framework`` entry point (and a ``test`` extra);
- a package ``cgc_<name>`` whose ``__init__.py`` registers the component(s) as lazy
  ``"module:Name"`` references, and a small, working example of the kind, importing only the
  plugin API :mod:`cgc_framework.plugin`, with docstrings saying what to replace;
- ``tests/`` that pass as generated: the component is found through the real entry point, it works
  on real experiment graphs of the embedded LINCS Cell Painting wells built by the installed
  built-in components, and a bad input raises the documented error.

It installs with ``pip install -e ./cgc-<name>``. One engine renders every kind: a kind is a
:class:`~cgc_framework.scaffold.common.Kind` (its components, its own files, README sections) in
``cgc_framework/scaffold/<kind>.py``; the pieces all distributions share (``pyproject.toml``,
``README.md``, the registering ``__init__.py``, ``tests/conftest.py``, the entry-point test) are
in :mod:`cgc_framework.scaffold.common`. Templates are :class:`string.Template` text with
``$name`` (NAME), ``$dist`` (``cgc-<name>``), ``$package`` (``cgc_<name>``) and ``$cls``
(CamelCase NAME).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from cgc_framework.scaffold import command, common, dataset, edge_source, encoder, evaluator, modality, task
from cgc_framework.scaffold.common import Kind

KINDS: dict[str, Kind] = {
    "dataset": dataset.KIND,
    "modality": modality.KIND,
    "edge_source": edge_source.KIND,
    "encoder": encoder.KIND,
    "task": task.KIND,
    "evaluator": evaluator.KIND,
    "command": command.KIND,
}
"""``--kind`` -> its template."""

SUPPORTED_KINDS = tuple(KINDS)

_BUILTIN_COMMANDS = ("run", "plugins", "plugin", "bench", "embed")


def _check_name(name: str, kind: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ValueError(f"plugin name {name!r} must be lower_snake_case (letters, digits, _), "
                         f"starting with a letter, e.g. 'l1000_expression'")
    if kind == "command" and name in _BUILTIN_COMMANDS:
        raise ValueError(f"'cgc {name}' is a built-in command; choose another name for the command")


def render(name: str, kind: str) -> dict[str, str]:
    """The files of the plugin project ``cgc-<name>`` of ``kind``: relative path -> text."""
    _check_name(name, kind)
    if kind not in KINDS:
        raise ValueError(f"--kind {kind!r} has no template; supported: {', '.join(SUPPORTED_KINDS)}")
    spec = KINDS[kind]
    fmt = {"name": name, "dist": f"cgc-{name.replace('_', '-')}", "package": f"cgc_{name}",
           "cls": "".join(part.capitalize() for part in name.split("_"))}

    def sub(template: str) -> str:
        return Template(template).substitute(fmt)

    fmt["summary"] = sub(spec.summary)
    fmt["listed"] = ", ".join(f"`{sub(c.name)}` ({c.kind})" for c in spec.components)
    fmt["about"] = sub(spec.about)
    fmt["usage"] = sub(spec.usage)
    fmt["package_data"] = sub(common.package_data(spec.package_data))
    fmt["registered_test"] = sub(common.registered_test(spec.components))
    templates = {"pyproject.toml": common.PYPROJECT, "README.md": common.README,
                 "$package/__init__.py": common.init_py(spec.components),
                 "tests/conftest.py": common.CONFTEST, **spec.files}
    return {sub(path): sub(text) for path, text in templates.items()}


def new_plugin(name: str, kind: str, directory: Path | str) -> Path:
    """Write the plugin project ``directory/cgc-<name>`` of ``kind`` and return its path.

    ``ValueError`` for a name that is not lower_snake_case or a kind without a template (the message
    lists the supported kinds); ``FileExistsError`` when the project directory exists.
    """
    files = render(name, kind)
    root = Path(directory) / f"cgc-{name.replace('_', '-')}"
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or directory")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


__all__ = ["KINDS", "SUPPORTED_KINDS", "new_plugin", "render"]
