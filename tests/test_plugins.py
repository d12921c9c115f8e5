"""One plug-in loader with one clash rule, used by both the suite and the placement-solver registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.errors import PlacementError, SuiteError
from hwsim.placement import get_solver, solver_targets
from hwsim.plugins import REPLACE_ENV
from hwsim.suites.registry import get_suite, suite_targets

PLUGIN = '''
class Suite:
    name = "fake"
    description = "a plug-in suite"
    default_hardware = "h100-sxm"
    def run(self, ctx):
        raise NotImplementedError
SUITE = Suite()

class Solver:
    name = "fake-solver"
    def solve(self, problem):
        raise NotImplementedError
'''


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str, entry_points: str) -> None:
    """A distribution ``dist`` with module ``hwsim_fake`` and the given entry_points.txt, on sys.path."""
    (tmp_path / "hwsim_fake.py").write_text(PLUGIN)
    info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))


CLASHES = "[hwsim.suites]\nt3 = hwsim_fake:SUITE\n[hwsim.placement]\ngreedy = hwsim_fake:Solver\n"


def test_a_plugin_may_not_replace_a_builtin_of_either_kind(tmp_path, monkeypatch):
    monkeypatch.delenv(REPLACE_ENV, raising=False)
    _install(tmp_path, monkeypatch, "hwsim-fake", CLASHES)
    with pytest.raises(SuiteError, match=r"suite 't3' is both built in \(hwsim.suites.t3:SUITE\) and a plug-in "
                                         r"\(hwsim_fake:SUITE from hwsim-fake\); set HWSIM_PLUGIN_REPLACE=t3"):
        get_suite("t3")
    with pytest.raises(PlacementError, match=r"placement solver 'greedy' is both built in .*GreedySolver.* "
                                             r"\(hwsim_fake:Solver from hwsim-fake\)"):
        get_solver("greedy")
    assert suite_targets()["t3"][0] == "hwsim.suites.t3:SUITE"  # still listed, as the built-in
    assert get_suite("kernels-basic").name == "kernels-basic"  # other names are unaffected


def test_the_user_opts_in_to_a_replacement(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "hwsim-fake", CLASHES)
    monkeypatch.setenv(REPLACE_ENV, "t3, greedy")
    assert get_suite("t3").description == "a plug-in suite"
    assert suite_targets()["t3"] == ("hwsim_fake:SUITE", "hwsim-fake")
    assert get_solver("greedy").name == "fake-solver"


def test_two_plugins_with_one_name_are_an_error_naming_both(tmp_path, monkeypatch):
    for dist, target in (("a", "SUITE"), ("b", "Other")):
        (tmp_path / dist).mkdir()
        _install(tmp_path / dist, monkeypatch, f"hwsim-{dist}", f"[hwsim.suites]\nfake = hwsim_fake:{target}\n")
    monkeypatch.setenv(REPLACE_ENV, "*")  # opting in does not pick between two plug-ins
    with pytest.raises(SuiteError, match=r"suite 'fake' is defined by two plug-ins: .*hwsim-[ab].* and .*hwsim-[ab]"):
        get_suite("fake")


def test_a_new_plugin_name_is_simply_added(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "hwsim-fake", "[hwsim.placement]\nfake-solver = hwsim_fake:Solver\n")
    assert solver_targets()["fake-solver"] == ("hwsim_fake:Solver", "hwsim-fake")
    assert get_solver("fake-solver").name == "fake-solver"
