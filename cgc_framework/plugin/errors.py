"""Exception types. Every message names the input at fault and how to fix it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cgc_framework.plugin.records import SkipLog


class CGCError(Exception):
    """Base class of all errors raised by cgc-framework on purpose."""


class ConfigError(CGCError):
    """``registry.yaml`` (or a sweep file) is malformed or invalid.

    ``problems`` lists one line per problem: the key path, the bad value and what is allowed.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class UnknownComponentError(ConfigError):
    """A component name in the config is not registered by any installed plugin."""


class PluginError(CGCError):
    """A plugin failed to import, to register, to construct a component or while running one."""

    def __init__(self, message: str, *, distribution: str | None = None,
                 entry_point: str | None = None, component: str | None = None):
        self.distribution = distribution
        self.entry_point = entry_point
        self.component = component
        super().__init__(message)


class DataError(CGCError):
    """The data cannot be used at all (e.g. every record was skipped).

    ``skips``: the records skipped on the way, when the error ends featurization (the run writes
    them to ``skipped_records.csv`` although it stops)."""

    def __init__(self, message: str, *, skips: SkipLog | None = None):
        self.skips = skips
        super().__init__(message)
