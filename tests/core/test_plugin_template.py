"""`cgc-plugin new` writes a plugin distribution that installs, registers and passes its own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cgc_framework.scaffold import SUPPORTED_KINDS, new_plugin

BIN = Path(sys.executable).parent


def test_template_installs_and_passes_its_own_tests(tmp_path):
    res = subprocess.run([BIN / "cgc-plugin", "new", "l1000_expression", "--dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    root = tmp_path / "cgc-l1000-expression"
    assert (root / "pyproject.toml").read_text().count('cgc_l1000_expression = "cgc_l1000_expression"') == 1
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(root)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                           capture_output=True, text=True, env=env, cwd=root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    listing = subprocess.run([BIN / "cgc-plugins"], capture_output=True, text=True, env=env, check=True)
    assert "l1000_expression_builder" in listing.stdout and "cgc-l1000-expression" in listing.stdout


def test_bad_names_kinds_and_existing_directories_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lower_snake_case"):
        new_plugin("L1000-Expression", "modality", tmp_path)
    with pytest.raises(ValueError, match="supported: dataset, modality, edge_source, encoder, task, evaluator, command"):
        new_plugin("x", "gizmo", tmp_path)
    new_plugin("x", "modality", tmp_path)
    with pytest.raises(FileExistsError):
        new_plugin("x", "modality", tmp_path)


#: kind -> (the components its distribution registers as (kind, name), tests it ships)
EVERY_KIND = {
    "dataset": ([("dataset", "demo_dataset")], 4),
    "modality": ([("modality", "demo_modality"), ("graph_builder", "demo_modality_builder")], 3),
    "edge_source": ([("edge_source", "demo_edge_source")], 3),
    "encoder": ([("encoder", "demo_encoder")], 4),
    "task": ([("pretraining_task", "demo_task")], 4),
    "evaluator": ([("evaluator", "demo_evaluator")], 3),
    "command": ([("command", "demo_command")], 3),
}


@pytest.mark.slow
def test_every_kind_installs_registers_and_passes_its_own_tests(tmp_path):
    """One distribution per kind, installed together; each one's tests (entry point, real experiment
    graphs of the embedded plate, bad input) pass as generated, two at a time."""
    assert set(EVERY_KIND) == set(SUPPORTED_KINDS)
    roots = {kind: new_plugin(f"demo_{kind}", kind, tmp_path) for kind in SUPPORTED_KINDS}
    for kind, root in roots.items():
        package = f"cgc_demo_{kind}"
        assert (root / "pyproject.toml").read_text().count(f'{package} = "{package}"') == 1
        init = (root / package / "__init__.py").read_text()
        assert "@hookimpl" in init and f'"{package}.' in init  # lazy "module:Name" references
        for path in root.rglob("*.py"):  # the plugin API only (tests may load the registry)
            text = path.read_text()
            assert "cgc_plugins" not in text, path
            assert "cgc_framework.engine" not in text or path.parent.name == "tests", path
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *map(str, roots.values())], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site))

    def own_tests(root: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                              capture_output=True, text=True, env=env, cwd=root)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(roots, pool.map(own_tests, roots.values())))
    for kind, res in results.items():
        assert res.returncode == 0, f"--kind {kind}:\n{res.stdout}{res.stderr}"
        assert f"{EVERY_KIND[kind][1]} passed" in res.stdout, f"--kind {kind}:\n{res.stdout}"
    listing = subprocess.run([BIN / "cgc-plugins", "--json"], capture_output=True, text=True, env=env, check=True)
    listed = {(c["kind"], c["name"]): c["distribution"] for c in json.loads(listing.stdout)}
    for kind, (components, _) in EVERY_KIND.items():
        for component in components:
            assert listed.get(component) == f"cgc-demo-{kind.replace('_', '-')}", (kind, component)
