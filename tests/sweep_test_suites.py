"""Suites that misbehave on purpose, for the sweep tests: one case fails, or one is interrupted.

Registered by the tests through ``hwsim.suites.registry.BUILTIN_SUITES``; sweep workers import this
module by its target (pool and Dask workers inherit the test process's ``sys.path``).
"""

from __future__ import annotations

import os

from hwsim.records import Record
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params

INTERRUPT_ENV = "HWSIM_TEST_SWEEP_INTERRUPT"


class Flaky:
    """Reports x squared plus a seeded draw; raises for ``x == fail_on``; Ctrl-C at ``x == $INTERRUPT_ENV``."""

    name = "sweep-test-flaky"
    description = "test double: fails or is interrupted on chosen cases"
    default_hardware = "t3-gpu"
    parameters = {
        "x": Parameter(0, "the case's number"),
        "fail_on": Parameter(-1, "the x that raises"),
    }

    def run(self, ctx: SuiteContext) -> SuiteResult:
        import numpy as np

        p = resolve_params(self, ctx.params)
        x = int(p["x"])
        if x == p["fail_on"]:
            raise ValueError(f"case x={x} fails on purpose")
        if os.environ.get(INTERRUPT_ENV) == str(x):
            raise KeyboardInterrupt
        draw = float(np.random.default_rng(ctx.seed).random())
        hw = ctx.hardware.name if ctx.hardware is not None else self.default_hardware
        return SuiteResult(records=[Record(self.name, {"x": x}, "square", float(x * x), "1", "simulated", hw),
                                    Record(self.name, {"x": x}, "draw", draw, "1", "simulated", hw)])


FLAKY = Flaky()
TARGETS = {FLAKY.name: "sweep_test_suites:FLAKY"}
