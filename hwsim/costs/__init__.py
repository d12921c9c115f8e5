"""What an operation costs: roofline op models, closed-form collectives and calibration fits.

Imports are lazy (PEP 562): ``import hwsim.costs.families`` must not pull in the hardware loader
(PyYAML) or anything else a bare GPU machine may lack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwsim.costs.collectives import (
        AllToAllCost,
        CollectiveCost,
        HbmStepModel,
        all_to_all,
        gather_step_hbm_bytes,
        reduce_step_hbm_bytes,
        ring_all_gather,
        ring_all_reduce,
        ring_reduce_scatter,
    )
    from hwsim.costs.fit import efficiency_from_fit, fit_linear_time
    from hwsim.costs.ops import (
        DTYPE_BYTES,
        INDEX_BYTES,
        SOFTMAX_FLOPS_PER_ELEMENT,
        OpCost,
        attention,
        elementwise,
        gemm,
        gemv,
        itemsize,
        memcpy,
        roofline,
        softmax,
        topk,
    )

_WHERE: dict[str, str] = {
    "AllToAllCost": "hwsim.costs.collectives",
    "CollectiveCost": "hwsim.costs.collectives",
    "HbmStepModel": "hwsim.costs.collectives",
    "all_to_all": "hwsim.costs.collectives",
    "gather_step_hbm_bytes": "hwsim.costs.collectives",
    "reduce_step_hbm_bytes": "hwsim.costs.collectives",
    "ring_all_gather": "hwsim.costs.collectives",
    "ring_all_reduce": "hwsim.costs.collectives",
    "ring_reduce_scatter": "hwsim.costs.collectives",
    "efficiency_from_fit": "hwsim.costs.fit",
    "fit_linear_time": "hwsim.costs.fit",
    "DTYPE_BYTES": "hwsim.costs.ops",
    "INDEX_BYTES": "hwsim.costs.ops",
    "SOFTMAX_FLOPS_PER_ELEMENT": "hwsim.costs.ops",
    "OpCost": "hwsim.costs.ops",
    "attention": "hwsim.costs.ops",
    "elementwise": "hwsim.costs.ops",
    "gemm": "hwsim.costs.ops",
    "gemv": "hwsim.costs.ops",
    "itemsize": "hwsim.costs.ops",
    "memcpy": "hwsim.costs.ops",
    "roofline": "hwsim.costs.ops",
    "softmax": "hwsim.costs.ops",
    "topk": "hwsim.costs.ops",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hwsim.costs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DTYPE_BYTES",
    "INDEX_BYTES",
    "SOFTMAX_FLOPS_PER_ELEMENT",
    "AllToAllCost",
    "CollectiveCost",
    "HbmStepModel",
    "OpCost",
    "all_to_all",
    "attention",
    "efficiency_from_fit",
    "elementwise",
    "fit_linear_time",
    "gather_step_hbm_bytes",
    "gemm",
    "gemv",
    "itemsize",
    "memcpy",
    "reduce_step_hbm_bytes",
    "ring_all_gather",
    "ring_all_reduce",
    "ring_reduce_scatter",
    "roofline",
    "softmax",
    "topk",
]
