"""`cgc-plugin new` writes a plugin distribution that installs, registers and passes its own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cgc_framework.scaffold import new_plugin

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
    with pytest.raises(ValueError, match="supported: modality"):
        new_plugin("x", "encoder", tmp_path)
    new_plugin("x", "modality", tmp_path)
    with pytest.raises(FileExistsError):
        new_plugin("x", "modality", tmp_path)
