"""The plugin system: entry points through pluggy, listings, third-party plugins, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from cgc_framework import hookimpl
from cgc_framework.api import plan_run
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.engine.registry import load_registry
from cgc_framework.plugin.errors import PluginError, UnknownComponentError
from cgc_plugins.encoders.hgt import HGTEncoder, HGTParams
from tests.support import MACHINERY, cli_sets, one_stage

BIN = Path(sys.executable).parent

THIRD_PARTY_PLUGIN = '''
"""A third-party encoder: per-type input embedding followed by an MLP (no message passing)."""
from pydantic import BaseModel, ConfigDict
from torch import nn
from cgc_framework import hookimpl
from cgc_framework.plugin.contracts import Encoder
from cgc_framework.plugin.input_embedding import SchemaInputEmbedding


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden_dim: int = 16


class MLPEncoder(Encoder):
    def __init__(self, params, schema):
        super().__init__()
        self.hidden_dim = params.hidden_dim
        self.embed = SchemaInputEmbedding(schema, params.hidden_dim)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(params.hidden_dim, params.hidden_dim))

    def forward(self, data):
        return {t: self.mlp(h) for t, h in self.embed(data).items()}


@hookimpl
def register_encoders(register):
    register("mlp_only", MLPEncoder, params=Params, description="MLP on input embeddings")
'''


def _make_dist(root: Path, dist: str, module: str, source: str) -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(source)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.3.1"
        [project.entry-points.cgc_framework]
        {module} = "{module}"
        [tool.setuptools]
        packages = ["{module}"]
        """))
    return pkg


@pytest.fixture(scope="module")
def third_party_site(tmp_path_factory) -> Path:
    """Build and install two throwaway plugin distributions into a private site dir."""
    root = tmp_path_factory.mktemp("plugins")
    site = root / "site"
    good = _make_dist(root, "cgc-mlp-encoder", "cgc_mlp_encoder", THIRD_PARTY_PLUGIN)
    bad = _make_dist(root, "cgc-broken-plugin", "cgc_broken_plugin", "raise RuntimeError('boom at import')\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(good), str(bad)], check=True, capture_output=True)
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(site), **extra)
    return env


def test_builtins_register_through_entry_points():
    reg = load_registry()
    rows = {(c.kind, c.name): c for c in reg.components()}
    for key in [("dataset", "lincs_cellpainting"), ("modality", "molecule"),
                ("graph_builder", "rdkit_molecule"), ("encoder", "hgt"),
                ("pretraining_task", "masked_recovery")]:
        info = rows[key]
        assert info.distribution == "cgc-framework"
        assert info.version  # a real installed version
        assert info.entry_point.startswith(("molecules =", "encoders =", "tasks =", "datasets ="))


def test_cli_lists_kind_name_distribution_version():
    out = subprocess.run([BIN / "cgc-plugins", "--json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    hgt = next(r for r in rows if r["name"] == "hgt")
    assert hgt["kind"] == "encoder" and hgt["distribution"] == "cgc-framework"
    table = subprocess.run([BIN / "cgc-run", "--list-plugins"], capture_output=True, text=True, check=True)
    assert "KIND" in table.stdout and "rdkit_molecule" in table.stdout


def test_third_party_plugin_is_listed_and_usable_from_yaml(third_party_site, tmp_path, registry_yaml):
    env = _env(third_party_site, CGC_DISABLE_PLUGINS="cgc_broken_plugin")
    out = subprocess.run([BIN / "cgc-plugins", "--json"], capture_output=True, text=True, env=env, check=True)
    mine = [r for r in json.loads(out.stdout) if r["name"] == "mlp_only"]
    assert mine == [{"kind": "encoder", "name": "mlp_only", "distribution": "cgc-mlp-encoder",
                     "version": "0.3.1", "entry_point": "cgc_mlp_encoder = cgc_mlp_encoder",
                     "description": "MLP on input embeddings"}]
    run_dir = tmp_path / "run"
    res = subprocess.run(
        [BIN / "cgc-run", str(registry_yaml), "--quiet", "--run-dir", str(run_dir),
         "--set", "model.encoder={name: mlp_only, params: {hidden_dim: 8}}",
         "--set", "trainer.num_workers=0", "--set", one_stage(1), "--set", "data.max_records=40",
         *cli_sets(MACHINERY)],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plugins = json.loads((run_dir / "plugins.json").read_text())
    enc = next(c for c in plugins["components"] if c["kind"] == "encoder")
    assert (enc["name"], enc["distribution"], enc["version"]) == ("mlp_only", "cgc-mlp-encoder", "0.3.1")
    assert "mlp_only" in (run_dir / "summary.md").read_text()


def test_plugin_failing_at_import_names_distribution_and_entry_point(third_party_site, registry_yaml):
    res = subprocess.run([BIN / "cgc-run", str(registry_yaml)], capture_output=True, text=True,
                         env=_env(third_party_site))
    assert res.returncode == 2
    assert "cgc_broken_plugin = cgc_broken_plugin" in res.stderr
    assert "'cgc-broken-plugin 0.3.1'" in res.stderr and "boom at import" in res.stderr
    assert "CGC_DISABLE_PLUGINS=cgc_broken_plugin" in res.stderr


class _ExplodingBuilderPlugin:
    """In-process plugin whose builder raises a bug (not a RecordError) on one molecule."""

    @hookimpl
    def register_graph_builders(self, register):
        from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

        class Exploding(RDKitMoleculeBuilder):
            def build(self, value):
                if "Cl" in value:
                    raise ZeroDivisionError("division by zero in my featurizer")
                return super().build(value)

        register("exploding_molecule", Exploding, params=RDKitMoleculeParams)


def test_plugin_raising_while_building_names_the_component(registry_yaml):
    plan = plan_run(registry_yaml, overrides=["graph.modalities.molecule.builder=exploding_molecule"],
                    extra_plugins=(_ExplodingBuilderPlugin(),))
    with pytest.raises(PluginError) as e:
        build_graphs(plan, progress=False)
    msg = str(e.value)
    assert "graph_builder 'exploding_molecule'" in msg
    assert "ZeroDivisionError" in msg and "building record 'SQ00015054:" in msg
    assert e.value.component == "graph_builder:exploding_molecule"


class _ExplodingBatchPlugin:
    """In-process plugin whose batched build raises a bug (its ``build`` goes through it too)."""

    @hookimpl
    def register_graph_builders(self, register):
        from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

        class ExplodingBatch(RDKitMoleculeBuilder):
            def build_many(self, values):
                raise KeyError("batch bug")

        register("exploding_batch", ExplodingBatch, params=RDKitMoleculeParams)


def test_a_failing_batched_build_is_retried_value_by_value_and_names_the_record(registry_yaml):
    plan = plan_run(registry_yaml, overrides=["graph.modalities.molecule.builder=exploding_batch"],
                    extra_plugins=(_ExplodingBatchPlugin(),))
    with pytest.raises(PluginError) as e:
        build_graphs(plan, progress=False)
    # the chunk failed in build_many; the retry of the first record raises again and names it
    assert "raised KeyError while building record 'SQ00015054:A07': 'batch bug'" in str(e.value)


def test_which_builders_are_built_in_batches():
    from cgc_framework.engine.featurize import batches
    from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder
    from cgc_plugins.proteins.builder import BiopythonProteinBuilder

    class OnlyBuild(RDKitMoleculeBuilder):          # overrides build only: its build must run
        def build(self, value):
            return super().build(value)

    class Both(OnlyBuild):
        def build_many(self, values):
            return super().build_many(values)

    assert batches(RDKitMoleculeBuilder()) and not batches(BiopythonProteinBuilder())
    assert not batches(OnlyBuild()) and batches(Both())


def test_duplicate_component_names_are_an_error():
    class Dup:
        @hookimpl
        def register_encoders(self, register):
            register("hgt", lambda params, schema: None)

    with pytest.raises(PluginError, match="encoder 'hgt' is registered twice"):
        load_registry(extra_plugins=(Dup(),))


def test_schema_violations_by_a_builder_are_caught():
    class BadShape:
        @hookimpl
        def register_graph_builders(self, register):
            from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

            class Wrong(RDKitMoleculeBuilder):
                def build(self, value) -> HeteroData:
                    data = super().build(value)
                    data["atom"].x = torch.zeros(data["atom"].num_nodes, 3)  # schema says 1 column
                    return data

            register("wrong_shape", Wrong, params=RDKitMoleculeParams)

    reg = load_registry(extra_plugins=(BadShape(),))
    from cgc_framework.engine.compose import compose
    from cgc_framework.engine.config import load_config

    cfg = load_config(Path(__file__).parents[2] / "registry.yaml",
                      ["graph.modalities.molecule.builder=wrong_shape"])
    plan = compose(cfg, reg, Path.cwd())
    with pytest.raises(PluginError, match=r"atom\.x has shape \(\d+, 3\).*requires \(\d+, 1\)"):
        build_graphs(plan, progress=False)


def test_a_schema_violation_names_the_component_that_declared_the_type():
    class BadShape:
        @hookimpl
        def register_graph_builders(self, register):
            from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

            class Wrong(RDKitMoleculeBuilder):
                def build(self, value) -> HeteroData:
                    data = super().build(value)
                    data["atom"].x = torch.zeros(data["atom"].num_nodes, 3)
                    return data

            register("wrong_shape", Wrong, params=RDKitMoleculeParams)

    plan = plan_run(Path(__file__).parents[2] / "registry.yaml",
                    overrides=["graph.modalities.molecule.builder=wrong_shape"], extra_plugins=(BadShape(),))
    with pytest.raises(PluginError) as e:
        build_graphs(plan, progress=False)
    msg = str(e.value)
    assert "Node type 'atom' is declared by graph_builder 'wrong_shape' (graph.modalities.molecule)" in msg
    assert e.value.component == "graph_builder:wrong_shape"
    # only the declaring component is named, not every component of the run
    assert "cellprofiler_profile" not in msg and "drug_target" not in msg


@pytest.mark.parametrize("args, problem", [
    (("enc", HGTEncoder), {"params": dict}),
    (("enc", HGTEncoder), {"params": HGTParams()}),
    (("enc", "not a factory"), {}),
    (("enc", 42), {}),
    (("enc", HGTEncoder), {"params": "no colon here"}),
    (("enc", HGTEncoder), {"description": 3}),
])
def test_register_checks_its_arguments_and_names_the_plugin(args, problem):
    class Careless:
        @hookimpl
        def register_encoders(self, register):
            register(*args, **problem)

    with pytest.raises(PluginError) as e:
        load_registry(extra_plugins=(Careless(),))
    assert "registered encoder 'enc' with" in str(e.value) and "Careless" in str(e.value)
    assert e.value.component == "encoder:enc"


def test_lazy_references_resolve_on_use_and_a_bad_one_names_the_plugin():
    class Lazy:
        @hookimpl
        def register_encoders(self, register):
            register("lazy_hgt", "cgc_plugins.encoders.hgt:HGTEncoder", params="cgc_plugins.encoders.hgt:HGTParams")
            register("lazy_missing", "cgc_plugins.encoders.hgt:NoSuchEncoder")

    reg = load_registry(extra_plugins=(Lazy(),))
    assert reg.get("encoder", "lazy_hgt").factory is HGTEncoder and reg.get("encoder", "lazy_hgt").params is HGTParams
    with pytest.raises(PluginError, match="encoder 'lazy_missing'.*'cgc_plugins.encoders.hgt:NoSuchEncoder' cannot "
                                          "be imported"):
        reg.create("encoder", "lazy_missing", None)


def test_unknown_modality_lists_the_available_modalities(registry_yaml):
    with pytest.raises(UnknownComponentError, match="Available modalities: "):
        plan_run(registry_yaml, overrides=["graph.modalities={molecul: {builder: rdkit_molecule}}"])


PLUGIN_FILE = '''
from cgc_framework.plugin import hookimpl


@hookimpl
def register_commands(register):
    register("hello", main, description="says hello")


def main(argv):
    print("hello", *argv)
    return 0


@hookimpl
def register_encoders(register):
    from cgc_plugins.encoders.hgt import HGTEncoder, HGTParams
    register("dev_hgt", HGTEncoder, params=HGTParams, description="an unpackaged encoder")
'''


def test_plugins_dir_loads_an_unpackaged_plugin_for_every_command(tmp_path):
    (tmp_path / "devplug").mkdir()
    (tmp_path / "devplug" / "my_dev_plugin.py").write_text(PLUGIN_FILE)
    listing = subprocess.run([BIN / "cgc-plugins", "--plugins-dir", str(tmp_path / "devplug")],
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "dev_hgt" in line)
    assert "(plugins dir" in row and "an unpackaged encoder" in row
    hello = subprocess.run([BIN / "cgc", "--plugins-dir", str(tmp_path / "devplug"), "hello", "world"],
                           capture_output=True, text=True)
    assert hello.returncode == 0 and hello.stdout.strip() == "hello world", hello.stderr
    unknown = subprocess.run([BIN / "cgc", "helo"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown command 'helo'" in unknown.stderr and "predict" in unknown.stderr
    reg = load_registry(plugins_dirs=[str(tmp_path / "devplug")])
    assert reg.get("encoder", "dev_hgt").distribution == f"(plugins dir {tmp_path / 'devplug'})"
    (tmp_path / "devplug" / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(PluginError, match=r"plugin file .*broken.py \(--plugins-dir .*\) failed to import"):
        load_registry(plugins_dirs=[str(tmp_path / "devplug")])
