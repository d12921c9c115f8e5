"""One plug-in loader for every registry (suites, placement solvers): built-ins plus entry points.

The clash rule, the same for every registry: a plug-in never silently replaces anything.

* A plug-in whose name is a built-in's is an error naming both (the built-in's target and the plug-in's
  distribution), unless the user opts in with ``HWSIM_PLUGIN_REPLACE=NAME[,NAME...]`` (or ``*``): then the
  plug-in replaces the built-in.
* Two plug-ins with the same name are always an error naming both; uninstall one.
* An entry point that repeats a built-in exactly (hwsim's own, once installed) is not a clash.

A clash fails only when the clashing name is used (or listed), so one bad plug-in does not stop hwsim.
This module imports only the standard library and :mod:`hwsim.errors`: ``hwsim.placement`` uses it
without pulling in the simulator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any

from hwsim.errors import HwsimError

REPLACE_ENV = "HWSIM_PLUGIN_REPLACE"
BUILTIN_ORIGIN = "hwsim"


@dataclass(frozen=True)
class Entry:
    """One registered name: its import target (``module:attribute``), where it came from, and any clash."""

    name: str
    target: str
    origin: str
    clash: str | None = None


class PluginRegistry:
    """Names of one kind (``suite``, ``placement solver``) mapped to import targets, with the one clash rule."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str], error: type[HwsimError]):
        self.kind = kind
        self.group = group
        self.builtins = builtins  # kept by reference: tests may register a built-in for the session
        self.error = error

    def entries(self) -> dict[str, Entry]:
        """Every name, sorted; a clashing name carries the message :meth:`resolve` raises."""
        found = {name: Entry(name, target, BUILTIN_ORIGIN) for name, target in self.builtins.items()}
        plugins: dict[str, list[Entry]] = {}
        for ep in metadata.entry_points(group=self.group):
            origin = ep.dist.name if ep.dist is not None else "an entry point"
            if self.builtins.get(ep.name) == ep.value:
                continue  # hwsim's own entry point for its own built-in
            if all(e.target != ep.value for e in plugins.get(ep.name, [])):
                plugins.setdefault(ep.name, []).append(Entry(ep.name, ep.value, origin))
        allowed = _replace_allowed()
        for name, candidates in plugins.items():
            if len(candidates) > 1:
                both = " and ".join(f"{e.target} from {e.origin}" for e in candidates)
                found[name] = Entry(name, candidates[0].target, candidates[0].origin,
                                    clash=f"{self.kind} {name!r} is defined by two plug-ins: {both}; uninstall one")
            elif name in found:
                plugin, builtin = candidates[0], found[name]
                if "*" in allowed or name in allowed:
                    found[name] = plugin
                else:
                    found[name] = Entry(name, builtin.target, builtin.origin, clash=(
                        f"{self.kind} {name!r} is both built in ({builtin.target}) and a plug-in ({plugin.target} from "
                        f"{plugin.origin}); set {REPLACE_ENV}={name} to use the plug-in, or rename it"))
            else:
                found[name] = candidates[0]
        return dict(sorted(found.items()))

    def resolve(self, name: str) -> Entry:
        """The entry for ``name``; an unknown or clashing name is a one-line error."""
        entries = self.entries()
        if name not in entries:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(entries)}")
        entry = entries[name]
        if entry.clash is not None:
            raise self.error(entry.clash)
        return entry

    def load(self, name: str) -> Any:
        """The object ``name`` points to (not yet checked against the registry's protocol)."""
        return load_target(self.resolve(name), self.error, self.kind)


def load_target(entry: Entry, error: type[HwsimError], kind: str) -> Any:
    module_name, _, attribute = entry.target.partition(":")
    try:
        return getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise error(f"{kind} {entry.name!r} from {entry.origin} ({entry.target}) cannot be loaded: {exc}") from None


def _replace_allowed() -> set[str]:
    return {n.strip() for n in os.environ.get(REPLACE_ENV, "").split(",") if n.strip()}


__all__ = ["BUILTIN_ORIGIN", "Entry", "PluginRegistry", "REPLACE_ENV", "load_target"]
