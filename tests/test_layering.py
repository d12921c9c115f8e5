"""The import rules, checked on the source (AST), so a violation fails here before it fails on a GPU box.

* ``hwsim.kernels`` runs on a bare GPU machine (numpy, numba, cupy): no simpy, pulp or simulator modules.
* hwsim core (engine, costs, hardware, systems, workloads, records, ...) never imports ``hwsim.suites``.
* ``hwsim.placement`` never imports simpy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("engine", "costs", "hardware", "systems", "workloads")
CORE_FILES = ("records.py", "errors.py", "fileio.py", "plugins.py", "__init__.py")  # not __main__: it is the CLI
SIMULATOR = ("hwsim.engine", "hwsim.systems", "hwsim.costs", "hwsim.workloads", "hwsim.suites", "hwsim.placement")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, absolute, including imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_of(path).rpartition(".")[0] if path.name != "__init__.py" else _module_of(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("kernels", "placement", "suites"):
        parts.insert(0, "hwsim")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _offending(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    bad = []
    for path in files:
        for module in _imports(path):
            if any(module == b or module.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return sorted(set(bad))


def test_the_scanner_sees_imports_inside_functions():
    cli = _imports(ROOT / "suites" / "cli.py")
    assert "hwsim.suites.calibrate" in cli  # imported inside main(), only when 'hw calibrate' runs
    assert _offending([ROOT / "suites" / "cli.py"], ("hwsim.suites",))


def test_kernels_import_no_simpy_pulp_or_simulator():
    assert not _offending(_files("kernels"), ("simpy", "pulp", *SIMULATOR))


def test_core_never_imports_suites():
    files = _files(*(f"hwsim/{c}" for c in CORE)) + [ROOT / "hwsim" / f for f in CORE_FILES]
    assert not _offending(files, ("hwsim.suites",))


def test_placement_never_imports_simpy():
    assert not _offending(_files("placement"), ("simpy", "hwsim.engine", "hwsim.suites"))


@pytest.mark.parametrize("folder", ["kernels", "placement", "suites"])
def test_code_imports_the_hwsim_namespace_only(folder):
    """``import kernels`` would import a different PyPI package once hwsim is installed."""
    assert not _offending(_files(folder, "hwsim", "tests"), (folder,))


def test_no_suite_imports_another_suites_private_helper():
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in _files("suites", "hwsim")
           for m in _imports(p) if m.startswith("hwsim.suites.") and m.rpartition(".")[2].startswith("_")
           and not m.rpartition(".")[2].startswith("__")]
    assert not bad
