"""`hwsim suite list` reads the built-in suites from a catalog: it must say what the suites say,
and listing must not import them (that is where the time went: Numba, NumPy)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hwsim.suites.catalog import BUILTIN_INFO
from hwsim.suites.registry import BUILTIN_SUITES, get_suite, suite_parameters


@pytest.mark.parametrize("name", sorted(BUILTIN_SUITES))
def test_catalog_entry_equals_the_suite(name):
    info = BUILTIN_INFO[name]
    suite = get_suite(name)
    assert (info.name, info.description, info.default_hardware) == (suite.name, suite.description,
                                                                     suite.default_hardware)
    assert info.parameter_defaults == {k: p.default for k, p in suite_parameters(suite).items()}


def test_suite_list_imports_no_suite_and_no_numba():
    code = ("import sys; from hwsim.suites.cli import main; main(['suite', 'list', '--format', 'csv']); "
            "loaded = [m for m in sys.modules if m.startswith(('numba', 'hwsim.suites.t3', 'hwsim.suites.spatten', "
            "'hwsim.suites.flover', 'hwsim.suites.moetuner', 'hwsim.kernels'))]; "
            "print('LOADED', loaded)")
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "LOADED []" in out
    assert "link-sharing" in out and "flows=20000" in out
