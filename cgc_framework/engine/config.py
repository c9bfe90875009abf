"""The config schema: ``registry.yaml`` validated into typed objects before any work starts.

Errors name the key path (``stages[1].weights.contrast``), the bad value and what is allowed;
malformed YAML names the line and column. Component names and their ``params`` are checked
against the installed plugins by :func:`cgc_framework.engine.compose.compose`, since only the plugins
know their own parameter schemas.

Paths inside component ``params`` (annotated :data:`cgc_framework.plugin.params.ExistingPath`) are resolved against the
directory holding the YAML file; ``run.output_dir`` is resolved against the working directory.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cgc_framework.plugin.errors import ConfigError


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ComponentRef(StrictModel):
    """``{name: <registered component>, params: {...}}``; params are validated by the component."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class RunSection(StrictModel):
    name: str = Field("cgc", pattern=r"^[A-Za-z0-9._-]+$")
    output_dir: Path = Path("runs")
    seed: int = Field(0, ge=0)


class JoinSpec(StrictModel):
    """A table joined into the dataset's records (``data.join``): per-record data of another modality."""

    table: Path = Field(description="CSV / TSV (optionally .gz) or Parquet file; relative to the YAML file")
    keys: list[str] = Field(["record_id"], min_length=1,
                          description="record fields matched with the table's columns of the same names "
                                      "(`record_id` = the record's id), e.g. [plate, well]")
    field: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                       description="record field the joined row is stored in (what a modality reads)")
    columns: list[str] | None = Field(None, min_length=1,
                                      description="table columns forming the value (default: every column not in `keys`)")
    required: bool = Field(True, description="true: a record without a row in the table is skipped (counted, "
                                             "with the reason); false: it is kept without the field")


class DataSection(StrictModel):
    dataset: ComponentRef
    join: list[JoinSpec] = Field(default_factory=list,
                                 description="tables of per-record data joined into the dataset's records")
    max_records: int | None = Field(None, gt=0, description="use only the first N records")
    cache_dir: Path | None = Field(None, description="featurization cache folder (else env CGC_FEATURE_CACHE; "
                                                     "neither: no cache); relative to the working directory")
    featurize_workers: int = Field(0, ge=0, description="processes that build graphs in parallel; 0 = in-process")
    featurize_on: Literal["local", "ray"] | None = Field(
        None, description="where shards are built: local (this machine, featurize_workers processes) or ray "
                          "(one Ray task per shard over the cluster); default ray when trainer.ray_address is set")
    shard_size: int = Field(4096, gt=0, description="records per featurized shard (data/shards/shard-*.pt)")
    shuffle_window: int = Field(8, gt=0, description="shards shuffled together each epoch; a worker holds at most "
                                                     "this many (+1) shards open")
    exclude_evaluation_test_molecules: bool = Field(
        True, description="leakage guard: leave out of pretraining every record whose molecule an evaluation "
                          "in `evaluations:` scores as unseen (e.g. its scaffold test split); each is "
                          "counted and listed with the reason")


class ModalityRef(StrictModel):
    builder: str
    params: dict[str, Any] = Field(default_factory=dict)
    required: bool = Field(
        True, description="false: a record whose value is missing or rejected keeps its other "
                          "subgraphs; each omission is counted and listed in the run summary")


class GraphSection(StrictModel):
    modalities: dict[str, ModalityRef] = Field(min_length=1)
    edge_sources: dict[str, ComponentRef] = Field(default_factory=dict)


class InitSection(StrictModel):
    """``model.init``: start from the weights of another run or of shipped pretrained weights."""

    checkpoint: str = Field(description="a checkpoint file (relative to the YAML file) or the name of a "
                                        "registered pretrained model (`cgc-plugins` lists them, e.g. default)")
    parts: list[Literal["encoder", "tasks"]] = Field(
        ["encoder"], min_length=1, description="which weights to copy (tensors with the same name and shape)")


class ModelSection(StrictModel):
    encoder: ComponentRef
    init: InitSection | None = Field(None, description="initial weights (default: fresh, seeded)")


class StageConfig(StrictModel):
    name: str
    epochs: int = Field(ge=0, description="0: no training step (the stage only checkpoints, e.g. to evaluate "
                                          "model.init weights as they are)")
    weights: dict[str, float] = Field(min_length=1, description="task key -> loss weight (lambda)")

    @model_validator(mode="after")
    def _non_negative(self) -> StageConfig:
        for task, w in self.weights.items():
            if not w >= 0:
                raise ValueError(f"weight of task '{task}' must be >= 0, got {w}")
        return self


class OptimizerSection(StrictModel):
    name: Literal["adam"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, gt=0, description="global batch: experiment graphs per step")
    grad_accum_steps: int = Field(1, gt=0)
    grad_clip_norm: float | None = Field(None, gt=0)


class TrainerSection(StrictModel):
    num_workers: int = Field(1, ge=0, description="Ray Train workers; 0 = in-process (Ray Train local mode, no Ray instance)")
    use_gpu: bool = False
    bf16: bool = Field(True, description="bfloat16 autocast on GPU workers (no effect on CPU)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPU cores (torch threads) of each worker; with "
                                   "num_workers 0, the threads of the in-process training loop")
    ray_address: str | None = None
    progress: bool = True
    checkpoint_every_steps: int | None = Field(
        100, gt=0, description="also checkpoint every N optimizer steps (stage boundaries always)")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept (the newest)")
    max_failures: int = Field(2, ge=0, description="worker failures Ray Train recovers from per run")
    profile_steps: int = Field(0, ge=0, description="profile this many optimizer steps (after 2 warm-up steps) "
                               "with torch.profiler on every worker: <run>/profile/rank<k>.{txt,json}")

    def describe(self) -> str:
        """One line for the plan and the summary: where and how training runs."""
        device = "GPU" if self.use_gpu else "CPU"
        if self.num_workers == 0:
            return f"in-process (Ray Train local mode), {max(1, int(self.cpus_per_worker))} torch thread(s), {device}"
        return (f"{self.num_workers} Ray Train worker(s), {self.cpus_per_worker:g} CPU/worker, {device}, "
                f"cluster {self.ray_address or 'local'}")


class CGCConfig(StrictModel):
    """The whole of ``registry.yaml``."""

    run: RunSection = Field(default_factory=RunSection)
    data: DataSection
    graph: GraphSection
    model: ModelSection
    tasks: dict[str, ComponentRef] = Field(min_length=1)
    stages: list[StageConfig] = Field(min_length=1)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    trainer: TrainerSection = Field(default_factory=TrainerSection)
    evaluations: dict[str, ComponentRef] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _stages_name_tasks(self) -> CGCConfig:
        problems = []
        for i, stage in enumerate(self.stages):
            for task in stage.weights:
                if task not in self.tasks:
                    problems.append(f"stages[{i}].weights: unknown task key '{task}'. Allowed: "
                                    f"{', '.join(self.tasks)} (the keys of `tasks:`)"
                                    + _did_you_mean(task, list(self.tasks)))
        if problems:
            raise ValueError("; ".join(problems))
        return self


# -- loading ---------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first defined on line {seen[key].start_mark.line + 1})",
                mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping safely; syntax errors name ``file:line:column``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"config file not found: {path}"])
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"{path}: cannot read as a text (YAML) file: {exc}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [yaml_problem(exc, str(path), text)]) from None
    if data is None:
        raise ConfigError(str(path), ["the file is empty; see registry.yaml in the repository"])
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"the top level must be a mapping of sections, "
                                      f"got {type(data).__name__}"])
    return data


_OPENED = {"flow sequence": ("'['", "']'"), "flow mapping": ("'{'", "'}'"), "quoted scalar": ("quote", "quote")}


def yaml_problem(exc: yaml.YAMLError, where: str, text: str = "", *, locate: bool = True) -> str:
    """One line for a YAML syntax error: ``where:line:column``, what is wrong and a hint.

    PyYAML reports where it gave up (``problem_mark``, often the end of the file) and, for an
    unclosed bracket, brace or quote, where that was opened (``context_mark``): the place to fix,
    so it leads. A tab where indentation is expected gets the hint to use spaces. ``locate=False``
    leaves out ``:line:column`` after ``where`` (a one-line ``--set`` value)."""
    problem = str(getattr(exc, "problem", None) or exc).strip()
    mark, context = getattr(exc, "problem_mark", None), str(getattr(exc, "context", None) or "")
    opened = getattr(exc, "context_mark", None)
    lines = text.splitlines()

    def at(m: Any) -> str:
        return f"line {m.line + 1}, column {m.column + 1}"

    def show(m: Any) -> str:
        return f" ({lines[m.line].strip()[:80]!r})" if m is not None and m.line < len(lines) else ""

    what = next((w for k, w in _OPENED.items() if k in context), None)
    if what and opened is not None:
        loc = f":{opened.line + 1}:{opened.column + 1}" if locate else ""
        stop = (f" at {where}:{mark.line + 1}:{mark.column + 1}" if locate else f" at {at(mark)}") \
            if mark is not None else ""
        msg = (f"{where}{loc}: malformed YAML: the {what[0]} opened at {at(opened)}{show(opened)} is never "
               f"closed (the parser stopped{stop}: {problem}): add the closing {what[1]}")
    else:
        loc = f":{mark.line + 1}:{mark.column + 1}" if mark is not None and locate else ""
        msg = f"{where}{loc}: malformed YAML: {problem}{show(mark)}"
    line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    if "'\\t'" in problem or "\t" in line[: len(line) - len(line.lstrip())]:
        msg += "; tabs are not allowed for indentation: use spaces"
    elif "mapping values are not allowed" in problem:
        msg += "; check the indentation of this line and that a value with ': ' inside is quoted"
    return msg


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][0]...`` for ``key = "a.b.0..."`` (integers index lists), creating mappings.

    Raises ``ConfigError`` naming the key when a part indexes past a list's end, names a list item
    by something other than its index, or goes through a value that is not a mapping or list."""
    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError("--set", [f"{key}: '{'.'.join(parts[:i]) or '(top)'}' is a list; index it with a "
                                            f"number 0..{len(node) - 1}, not '{part}'"])
            if int(part) >= len(node):
                raise ConfigError("--set", [f"{key}: '{'.'.join(parts[:i])}' has {len(node)} item(s); index "
                                            f"{part} is past its end (items are numbered from 0)"])
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError("--set", [f"{key}: '{'.'.join(parts[:i])}' is the value {node!r}, not a mapping or "
                                        f"list, so '{where}' cannot be set; set '{'.'.join(parts[:i])}' itself"])


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a raw config mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", [f"'{item}': expected KEY=VALUE, e.g. trainer.num_workers=2"])
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError("--set", [yaml_problem(exc, f"--set {item}", raw, locate=False)]) from None
        set_dotted(data, key, value)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> CGCConfig:
    """Read and validate ``registry.yaml`` (schema only; see :func:`compose` for components).
    ``${VAR}`` / ``${VAR:-default}`` in string values are expanded after the overrides."""
    path = Path(path)
    data = expand_env(apply_overrides(read_yaml(path), overrides or []), source=str(path))
    return validate_config(data, source=str(path))


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, *, source: str = "sweep", environ: dict[str, str] | None = None,
               _key: str = "") -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string value of a config or sweep file
    (data directories, profile paths). An unset (or empty) variable without a default is a
    :class:`ConfigError`; a value that expands to the empty string becomes ``null``."""
    env = os.environ if environ is None else environ
    if isinstance(data, dict):
        return {k: expand_env(v, source=source, environ=env, _key=f"{_key}.{k}" if _key else str(k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, source=source, environ=env, _key=f"{_key}.{i}") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if env.get(name):
            return env[name]
        if default is None:
            raise ConfigError(source, [f"{_key}: environment variable {name} is not set (write "
                                       f"${{{name}:-DEFAULT}} for a default, or --set {_key}=VALUE)"])
        return default

    return _ENV.sub(sub, data) or None



def validate_config(data: dict[str, Any], source: str = "<dict>") -> CGCConfig:
    try:
        return CGCConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, model=CGCConfig)) from None


# -- error messages --------------------------------------------------------------------------


def _did_you_mean(value: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that the location ``loc`` (inside ``model``) refers to."""
    node: Any = model
    for part in loc:
        if node is None:
            return None
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part) if isinstance(part, str) else None
            node = field.annotation if field is not None else None
        elif get_origin(node) in (dict, list):
            node = get_args(node)[-1] if get_args(node) else None
        else:
            return None
    node = _unwrap(node)
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    return tp


def format_validation_error(exc: ValidationError, *, model: type[BaseModel] | None = None,
                            prefix: str = "") -> list[str]:
    """One line per problem: key path, bad value, what is allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _format_loc(loc, prefix)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1]) if model else None
            allowed = list(parent.model_fields) if parent else []
            hint = (f" Allowed keys: {', '.join(allowed)}." + _did_you_mean(str(loc[-1]), allowed)
                    if allowed else "")
            lines.append(f"{where}: unknown key '{loc[-1]}'.{hint}")
        elif kind == "missing":
            lines.append(f"{where}: required key is missing.")
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if kind in ("model_type", "model_attributes_type", "dict_type"):
                msg = "expected a mapping of keys"
            lines.append(f"{where}: {msg}; got {err.get('input')!r}")
    return lines
