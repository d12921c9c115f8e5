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


__all__ = ["CALIBRATION_ATTEMPTS", "HOST_NAME", "host_hardware"]
