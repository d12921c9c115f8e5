"""Errors a user can act on: each carries one line that names the file, field or value at fault."""


class HwsimError(Exception):
    """Base of every error the CLI reports as one line, without a traceback."""


class HardwareError(HwsimError):
    """A hardware description is unknown, malformed or inconsistent."""


class RecordsError(HwsimError):
    """A results file cannot be read or written."""


class SuiteError(HwsimError):
    """A suite is unknown or was asked for something it cannot do."""


class CostError(HwsimError):
    """A cost model was asked about an impossible operation (negative size, unknown dtype)."""
