"""The plugin manager: loads the ``cgc_framework`` entry-point group and records components.

Built-in components (``plugins/cgc_plugins``) are found through the same entry-point group as
third-party ones; nothing is registered behind pluggy's back. Set ``CGC_DISABLE_PLUGINS`` to a
comma-separated list of entry-point names to skip broken or unwanted plugins.

During development a plugin module need not be packaged: every ``*.py`` file in the directories of
``CGC_PLUGINS_DIR`` (``os.pathsep``-separated; ``--plugins-dir DIR`` on the commands sets it) is
loaded as a plugin, listed with the distribution ``(plugins dir <DIR>)``.

A factory or a params model may be registered as a lazy reference ``"package.module:Name"``: it is
imported when the component is first constructed or validated, so listing plugins and validating a
config's component names do not import a plugin's heavy dependencies.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import pluggy
from pydantic import BaseModel, ValidationError

import cgc_framework.plugin.hookspecs as hookspecs
from cgc_framework.plugin.errors import CGCError, ConfigError, PluginError, UnknownComponentError
from cgc_framework.plugin.records import RecordError

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
PLUGINS_DIR_ENV = "CGC_PLUGINS_DIR"
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component and where it came from.

    ``factory`` and ``params`` resolve lazy ``"module:Name"`` references on first access; an import
    failure is a :class:`PluginError` naming the plugin."""

    kind: str
    name: str
    factory_ref: Callable[..., Any] | str
    params_ref: type[BaseModel] | str | None
    description: str
    entry_point: str
    distribution: str
    version: str
    _resolved: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def origin(self) -> str:
        return (f"entry point '{self.entry_point}' of distribution "
                f"'{self.distribution} {self.version}'")

    @property
    def factory(self) -> Callable[..., Any]:
        factory = self._resolve("factory", self.factory_ref)
        if not callable(factory):
            raise self._error(f"its factory {self.factory_ref!r} resolved to {factory!r}, which is not callable")
        return factory

    @property
    def params(self) -> type[BaseModel] | None:
        params = self._resolve("params", self.params_ref)
        if params is not None and not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise self._error(f"its params {self.params_ref!r} resolved to {params!r}, which is not a "
                              f"pydantic model class")
        return params

    def _resolve(self, what: str, ref: Any) -> Any:
        if not isinstance(ref, str):
            return ref
        if what not in self._resolved:
            module, _, attr = ref.partition(":")
            try:
                self._resolved[what] = getattr(importlib.import_module(module), attr)
            except Exception as exc:
                raise self._error(f"its {what} '{ref}' cannot be imported ({type(exc).__name__}: {exc})") from exc
        return self._resolved[what]

    def _error(self, problem: str) -> PluginError:
        return PluginError(f"{self.kind} '{self.name}' from {self.origin}: {problem}",
                           distribution=self.distribution, entry_point=self.entry_point,
                           component=f"{self.kind}:{self.name}")


@dataclass(frozen=True)
class _Origin:
    entry_point: str
    distribution: str
    version: str


class PluginRegistry:
    """All components of all loaded plugins, by kind and name."""

    def __init__(self, manager: pluggy.PluginManager, components: dict[str, dict[str, ComponentInfo]]):
        self.manager = manager
        self._components = components

    # -- lookup -----------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self._components[kind])

    def components(self) -> list[ComponentInfo]:
        return [c for kind in hookspecs.HOOK_KINDS for c in
                sorted(self._components[kind].values(), key=lambda c: c.name)]

    def get(self, kind: str, name: str, *, key: str = "") -> ComponentInfo:
        """The component ``name`` of ``kind``; an unknown name raises
        :class:`UnknownComponentError` with the available names and the closest match."""
        try:
            return self._components[kind][name]
        except KeyError:
            pass
        available = self.names(kind)
        close = difflib.get_close_matches(str(name), available, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        where = f"{key}: " if key else ""
        raise UnknownComponentError("registry", [
            f"{where}unknown {kind} '{name}'. Available {_plural(kind)}: "
            f"{', '.join(available) or '(none installed)'}.{hint} "
            f"List installed components with `cgc-plugins`."])

    # -- construction -----------------------------------------------------------------------

    def validate_params(self, kind: str, name: str, raw: dict[str, Any] | None, *, key: str,
                        context: dict[str, Any] | None = None) -> BaseModel | None:
        """Validate a component's ``params:`` mapping with the component's own schema."""
        info = self.get(kind, name, key=key)
        raw = raw or {}
        if info.params is None:
            if raw:
                raise ConfigError("registry", [
                    f"{key}.params: {kind} '{name}' takes no parameters, got {sorted(raw)}"])
            return None
        try:
            return info.params.model_validate(raw, context=context)
        except ValidationError as exc:
            from cgc_framework.engine.config import format_validation_error
            raise ConfigError("registry", format_validation_error(exc, model=info.params,
                                                                   prefix=f"{key}.params")) from None

    def create(self, kind: str, name: str, params: BaseModel | None, **kwargs: Any) -> Any:
        """Call the component's factory; failures become :class:`PluginError` naming the plugin."""
        info = self.get(kind, name)
        with self.guard(info, "being constructed"):
            return info.factory(params, **kwargs)

    @contextlib.contextmanager
    def guard(self, info: ComponentInfo, action: str) -> Iterator[None]:
        """Turn an unexpected exception of a component into a :class:`PluginError`.

        ``RecordError`` (one bad record) and the framework's own errors pass through.
        """
        try:
            yield
        except (RecordError, CGCError):
            raise
        except Exception as exc:  # a plugin bug: name the plugin, keep the traceback chained
            raise PluginError(
                f"{info.kind} '{info.name}' from {info.origin} raised "
                f"{type(exc).__name__} while {action}: {exc}",
                distribution=info.distribution, entry_point=info.entry_point,
                component=f"{info.kind}:{info.name}") from exc


def _plural(kind: str) -> str:
    return {"modality": "modalities"}.get(kind, f"{kind}s")


def _load_entry_points(pm: pluggy.PluginManager) -> dict[int, _Origin]:
    disabled = {s.strip() for s in os.environ.get("CGC_DISABLE_PLUGINS", "").split(",") if s.strip()}
    origins: dict[int, _Origin] = {}
    seen: set[str] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "(unknown)"
        version = ep.dist.version if ep.dist else "?"
        label = f"{ep.name} = {ep.value}"
        if ep.name in disabled or label in seen:
            continue
        seen.add(label)
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin entry point '{label}' of distribution '{dist} {version}' failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or reinstall it (pip install --force-reinstall "
                f"{dist}), uninstall it (pip uninstall {dist}), or skip it with "
                f"CGC_DISABLE_PLUGINS={ep.name}.",
                distribution=dist, entry_point=label) from exc
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=ep.name)
        origins[id(plugin)] = _Origin(label, dist, version)
    return origins


def env_plugins_dirs() -> list[str]:
    """The development plugin directories named by ``CGC_PLUGINS_DIR``."""
    return [d for d in os.environ.get(PLUGINS_DIR_ENV, "").split(os.pathsep) if d.strip()]


def _load_plugins_dirs(pm: pluggy.PluginManager, dirs: list[str]) -> dict[int, _Origin]:
    """Every ``*.py`` file of ``dirs`` as a plugin module (``cgc_plugins_dir.<stem>``)."""
    origins: dict[int, _Origin] = {}
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise PluginError(f"{PLUGINS_DIR_ENV} / --plugins-dir names {root}, which is not a directory")
        for path in sorted(root.glob("*.py")):
            name = f"cgc_plugins_dir.{path.stem}"
            module = sys.modules.get(name)
            if module is None or getattr(module, "__file__", None) != str(path):
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                try:
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
                except Exception as exc:
                    raise PluginError(f"plugin file {path} (--plugins-dir {root}) failed to import: "
                                      f"{type(exc).__name__}: {exc}", distribution=f"(plugins dir {root})",
                                      entry_point=path.name) from exc
                sys.modules[name] = module
            if not pm.is_registered(module):
                pm.register(module, name=name)
                origins[id(module)] = _Origin(path.name, f"(plugins dir {root})", "-")
    return origins


def load_registry(extra_plugins: tuple[Any, ...] = (), *, plugins_dirs: list[str] | None = None) -> PluginRegistry:
    """Load every installed plugin, the plugin files of the development directories
    (``plugins_dirs``, default: ``CGC_PLUGINS_DIR``) and ``extra_plugins`` (e.g. a module defined
    in a notebook), and collect their components."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    origins = _load_entry_points(pm)
    origins.update(_load_plugins_dirs(pm, env_plugins_dirs() if plugins_dirs is None else plugins_dirs))
    for plugin in extra_plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
            name = getattr(plugin, "__name__", type(plugin).__name__)
            origins[id(plugin)] = _Origin(name, "(not installed)", "-")
    components: dict[str, dict[str, ComponentInfo]] = {k: {} for k in hookspecs.HOOK_KINDS}
    for kind, hook_name in hookspecs.HOOK_KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = origins.get(id(impl.plugin), _Origin(impl.plugin_name, "(unknown)", "?"))
            register = partial(_register, components[kind], kind, origin)
            try:
                impl.function(register=register)
            except CGCError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin entry point '{origin.entry_point}' of distribution "
                    f"'{origin.distribution} {origin.version}' raised {type(exc).__name__} in "
                    f"{hook_name}: {exc}", distribution=origin.distribution,
                    entry_point=origin.entry_point) from exc
    return PluginRegistry(pm, components)


def _register(table: dict[str, ComponentInfo], kind: str, origin: _Origin, name: str,
              factory: Callable[..., Any] | str, *, params: type[BaseModel] | str | None = None,
              description: str = "") -> None:
    where = (f"entry point '{origin.entry_point}' of distribution '{origin.distribution} {origin.version}' "
             f"registered {kind} {name!r} with")

    def bad(problem: str) -> PluginError:
        return PluginError(f"{where} {problem}", distribution=origin.distribution, entry_point=origin.entry_point,
                           component=f"{kind}:{name}")

    if not isinstance(name, str) or not name:
        raise PluginError(f"{origin.entry_point}: {kind} names must be non-empty strings, got {name!r}",
                          distribution=origin.distribution, entry_point=origin.entry_point)
    if isinstance(factory, str):
        if not _REF.match(factory):
            raise bad(f"factory {factory!r}: a lazy reference must read 'package.module:Name'")
    elif not callable(factory):
        raise bad(f"factory {factory!r}, which is not callable: pass the class or function that builds "
                  f"the component (or a 'package.module:Name' reference)")
    if isinstance(params, str):
        if not _REF.match(params):
            raise bad(f"params {params!r}: a lazy reference must read 'package.module:Name'")
    elif params is not None and not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise bad(f"params={params!r}: params must be a pydantic BaseModel subclass (class MyParams(BaseModel): "
                  f"...) or None for a component without parameters")
    if not isinstance(description, str):
        raise bad(f"description {description!r}: it must be a string")
    if name in table:
        other = table[name]
        raise PluginError(
            f"{kind} '{name}' is registered twice: by {other.origin} and by entry point "
            f"'{origin.entry_point}' of distribution '{origin.distribution} {origin.version}'. "
            f"Uninstall one, or disable one with CGC_DISABLE_PLUGINS.",
            distribution=origin.distribution, entry_point=origin.entry_point,
            component=f"{kind}:{name}")
    if not description and not isinstance(factory, str):
        doc = (getattr(factory, "__doc__", None) or "").strip()
        description = doc.splitlines()[0] if doc else ""
    table[name] = ComponentInfo(kind, name, factory, params, description, origin.entry_point,
                                origin.distribution, origin.version)
