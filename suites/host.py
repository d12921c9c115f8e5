"""This machine's hardware, decided in one place for every suite that measures or models the host.

The rule: hardware the user gave (``--hw``) wins; else the ``host`` description written by
``hwsim hw calibrate``; else a quick calibration now (not saved), retried when a busy machine spoils
a fit, with a note saying so. Suites import :func:`host_hardware`, never each other's helpers.
"""

from __future__ import annotations

from hwsim.errors import HardwareError
from hwsim.hardware import Hardware, load_hardware

HOST_NAME = "host"
CALIBRATION_ATTEMPTS = 3


def host_hardware(given: Hardware | None = None, *, kind: str | None = None, quick: bool = True, seed: int = 0,
                  use_saved: bool = True, name: str = HOST_NAME) -> tuple[Hardware, list[str]]:
    """(this machine's hardware, notes for the reader).

    ``kind``: accept ``given`` or the saved ``host`` only when its device is of this kind (e.g. "cpu"
    for a model of CPU kernels). ``use_saved=False`` skips the saved file and calibrates now (a suite
    whose cost model must be fitted in the same conditions it measures in). ``name``: the name of a
    description calibrated now.
    """
    if given is not None and (kind is None or given.device.kind == kind):
        return given, []
    if use_saved:
        try:
            saved = load_hardware(HOST_NAME)
        except HardwareError:
            pass
        else:
            if kind is None or saved.device.kind == kind:
                return saved, []
    from hwsim.suites.calibrate import CalibrationError, cpu_hardware

    for attempt in range(CALIBRATION_ATTEMPTS):
        try:
            hw, _ = cpu_hardware(name, quick=quick, seed=seed + attempt)
        except CalibrationError:  # a fit spoiled by a busy machine: measure again
            if attempt == CALIBRATION_ATTEMPTS - 1:
                raise
            continue
        note = ("no calibration of this machine was found, so a quick one ran (not saved); "
                "run 'hwsim hw calibrate' for a fuller one") if use_saved else ""
        return hw, [note] if note else []
    raise AssertionError("unreachable")


def host_with_models(given: Hardware | None = None, *, threads: int = 1, quick: bool = True, seed: int = 0,
                     name: str = "host-cpu") -> Hardware:
    """This CPU with per-family operator models (``device.operators``) fitted on ``threads`` threads:
    the user's CPU hardware or the saved calibration when its models were fitted on that thread count,
    else :func:`host_hardware`'s description carrying models calibrated now by the project's
    microbenchmarks (:func:`hwsim.suites.calibrate.fit_operator_models`), never from a suite's cases.
    A suite measuring its kernels with ``measure_as_calibrated`` on ``threads`` threads compares them
    with predictions from models that saw the same machine."""
    from dataclasses import replace

    from hwsim.costs.ops import operator_models
    from hwsim.suites.calibrate import fit_operator_models

    hw = host_hardware(given, kind="cpu", quick=quick, seed=seed, name=name)[0]
    models = operator_models(hw.device)
    if models is not None and models.threads == threads:
        return hw
    fitted = fit_operator_models(threads=threads, quick=quick, seed=seed).models
    return replace(hw, device=replace(hw.device, operators=fitted))


__all__ = ["CALIBRATION_ATTEMPTS", "HOST_NAME", "host_hardware", "host_with_models"]
