"""hwsim: a hardware-aware discrete-event simulator whose numbers are checked against real kernels.

The package is split the way a reader looks for things: ``hardware`` (what the machine is),
``engine`` (how time passes and bandwidth is shared), ``costs`` (what an operation costs),
``records`` (how every number is kept) and ``systems`` (the four modelled papers).
"""

from hwsim.errors import HwsimError

__version__ = "0.1.0"

__all__ = ["HwsimError", "__version__"]
