"""Closed-form costs of single operations on one device: a roofline with a size-dependent efficiency.

Every model returns an :class:`OpCost` whose ``flops`` and ``bytes`` are exact counts for the stated
data-movement assumption, so a test (or a reader) can redo the algebra by hand.

Time model. :class:`~hwsim.hardware.model.Efficiency` says an operation of size ``x`` reaches
``fraction(x) = max * x / (x + half)`` of peak. Dividing the work by the achieved rate gives

    t(x) = x / (peak * max * x / (x + half)) = x / (peak * max) + half / (peak * max)

i.e. a time *linear* in work: a rate ``peak * max`` plus a fixed cost ``half / (peak * max)``.
Calibration (:mod:`hwsim.costs.fit`) relies on this identity to turn a straight-line fit of measured
times back into ``(max, half)``; keep the two in step if either changes.

A device whose hardware file carries measured per-family models (``device.operators``) is priced by
them instead, family by family (:func:`measured_models`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hwsim.costs.families import OperatorModels, derived_gpu_models, gemm_padded_flops
from hwsim.errors import CostError
from hwsim.hardware.model import Device

DTYPE_BYTES: dict[str, float] = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int12": 1.5,
    "int4": 0.5,
}
"""Bytes per element. Sub-byte and 12-bit types are packed, so their size is fractional."""

INDEX_BYTES = 4.0
"""Indices (top-k positions) are int32."""

SOFTMAX_FLOPS_PER_ELEMENT = 5.0
"""max, subtract, exp, sum, divide: one of each per element."""

Bound = Literal["compute", "memory", "overhead"]


def itemsize(dtype: str) -> float:
    """Bytes per element of ``dtype``; an unknown name is an error, never a silent default."""
    try:
        return DTYPE_BYTES[dtype]
    except (KeyError, TypeError):
        raise CostError(f"unknown dtype {dtype!r}; known: {sorted(DTYPE_BYTES)}") from None


@dataclass(frozen=True)
class OpCost:
    """What one operation costs and which resource sets its time."""

    op: str
    flops: float
    bytes: float
    compute_s: float
    memory_s: float
    overhead_s: float
    time_s: float

    @property
    def bound(self) -> Bound:
        """The term that sets ``time_s``: the fixed overhead if it exceeds both roofline terms."""
        if self.overhead_s > max(self.compute_s, self.memory_s):
            return "overhead"
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP per byte moved (infinite for an operation that moves nothing)."""
        if self.bytes == 0:
            return math.inf if self.flops > 0 else 0.0
        return self.flops / self.bytes


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the cost modules: each names the argument and the value at fault.


def _count(name: str, value: object, minimum: int = 1) -> int:
    """An integer argument that must be at least ``minimum`` (floats like 3.0 are refused on purpose)."""
    if isinstance(value, bool):
        raise CostError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise CostError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise CostError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def _amount(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite real argument that must be positive (or non-negative with ``allow_zero``)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CostError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        need = ">= 0" if allow_zero else "> 0"
        raise CostError(f"{name} must be finite and {need}, got {value!r}")
    return number


def _working_set(value: float | None) -> float | None:
    """An op's ``working_set_bytes``: None (its own bytes) or a finite size > 0."""
    return None if value is None else _amount("working_set_bytes", value)


def _peak(device: Device, dtype: str) -> float:
    itemsize(dtype)
    if dtype not in device.peak_flops_per_s:
        raise CostError(
            f"dtype {dtype!r} has no peak rate on device {device.name!r}; it has {sorted(device.peak_flops_per_s)}"
        )
    return device.peak_flops_per_s[dtype]


# ---------------------------------------------------------------------------------------------


def roofline(device: Device, op: str, flops: float, nbytes: float, dtype: str | None) -> OpCost:
    """Time of an operation that does ``flops`` and moves ``nbytes`` through memory.

    Bytes go at the off-chip bandwidth, or at ``sram_bandwidth`` when the device has one and the
    bytes fit in its on-chip SRAM.

    ``time = launch_overhead + max(compute, memory)``: compute and memory traffic overlap perfectly,
    the launch does not. Each term divides work by the rate the efficiency curve grants at that
    size (see the module docstring for why this is linear in work). Zero work costs zero time in
    that term; ``dtype`` may be ``None`` only when ``flops`` is zero.
    """
    flops = _amount("flops", flops, allow_zero=True)
    nbytes = _amount("nbytes", nbytes, allow_zero=True)
    eff = device.efficiency
    compute_s = 0.0
    if flops > 0:
        if dtype is None:
            raise CostError(f"dtype must be given for an operation with flops={flops!r}")
        compute_s = flops / (_peak(device, dtype) * eff.compute(flops))
    elif dtype is not None:
        itemsize(dtype)
    memory_s = 0.0
    if nbytes > 0:
        # data that fits on chip is taken as warm (a kernel repeated on the same buffers)
        on_chip = device.sram_bandwidth_bytes_per_s is not None and nbytes <= device.sram_bytes
        bandwidth = device.sram_bandwidth_bytes_per_s if on_chip else device.memory.bandwidth_bytes_per_s
        memory_s = nbytes / (bandwidth * eff.memory(nbytes))  # type: ignore[operator]
    overhead_s = device.launch_overhead_s
    return OpCost(
        op=op,
        flops=flops,
        bytes=nbytes,
        compute_s=compute_s,
        memory_s=memory_s,
        overhead_s=overhead_s,
        time_s=overhead_s + max(compute_s, memory_s),
    )


def operator_models(device: Device) -> OperatorModels | None:
    """The device's per-family models: calibrated ones when its hardware file carries them
    (``device.operators``), else for a GPU models derived from its datasheet numbers plus the
    documented assumptions of :func:`hwsim.costs.families.derived_gpu_models`; None for a CPU
    without calibration (the roofline is used)."""
    explicit = measured_models(device)
    if explicit is not None:
        return explicit
    if device.kind == "gpu":
        return derived_gpu_models(sms=device.compute_units, hbm_bytes_per_s=device.memory.bandwidth_bytes_per_s,
                                  l2_bytes=device.sram_bytes, launch_s=device.launch_overhead_s,
                                  peak_flops_per_s=device.peak_flops_per_s)
    return None


def measured_models(device: Device) -> OperatorModels | None:
    """The models a hardware file carries (``device.operators``, measured by ``hwsim hw calibrate``).

    Every family they price replaces the roofline: GEMM, elementwise, softmax, copy and fused
    attention as well as GEMV and top-k. Models *derived* from a GPU datasheet (see
    :func:`operator_models`) price only GEMV, top-k and overlap; the rest of such a preset keeps its
    fitted efficiency curve, which its tables were checked against."""
    explicit = getattr(device, "operators", None)
    return explicit if isinstance(explicit, OperatorModels) else None


def _family_cost(op: str, flops: float, nbytes: float, time_s: float, launch_s: float, compute_s: float) -> OpCost:
    """An OpCost whose time comes from a per-family model: ``compute_s`` the model's compute-side
    share, the rest of the non-launch time counted as memory."""
    body = max(time_s - launch_s, 0.0)
    return OpCost(op=op, flops=flops, bytes=nbytes, compute_s=min(compute_s, body),
                  memory_s=body if compute_s < body else 0.0, overhead_s=launch_s, time_s=time_s)


def gemm(device: Device, m: int, n: int, k: int, dtype: str = "fp32", batch: int = 1,
         working_set_bytes: float | None = None) -> OpCost:
    """``C[m,n] = A[m,k] @ B[k,n]``, ``batch`` times.

    Assumes each operand crosses off-chip memory exactly once (perfect on-chip reuse by tiling) and
    C is written without being read (no accumulate into C): bytes = (mk + kn + mn) * itemsize.
    ``working_set_bytes`` (here and in the other ops): what the op's data competes with for the
    caches between two runs, where measured models price it (a sequence of ops: its footprint).
    """
    m, n, k, batch = _count("m", m), _count("n", n), _count("k", k), _count("batch", batch)
    size = itemsize(dtype)
    flops = 2.0 * m * n * k * batch
    nbytes = float(m * k + k * n + m * n) * size * batch
    working_set_bytes = _working_set(working_set_bytes)
    models = measured_models(device)
    if models is not None and dtype in models.gemm_flops_per_s:
        # the calls of a batch take turns in the caches: each streams at the level all of them fit in
        ws = max(nbytes, working_set_bytes or 0.0)
        if m == 1 or n == 1:
            # a GEMM with one output row (or column) runs as a GEMV: BLAS streams the matrix once and
            # packs nothing (this host's OpenBLAS: [1,64]@[64,1024] and [64]@[64,1024] both 5.3 us)
            rows = n if m == 1 else m
            per_call_s = models.gemv_s(rows, k, size, working_set_bytes=ws)
            return _family_cost("gemm", flops, nbytes, batch * per_call_s, batch * models.launch_s, 0.0)
        per_call_s = models.gemm_s(m, n, k, size, dtype, working_set_bytes=ws)
        compute_s = gemm_padded_flops(m, n, k, models.gemm_tile, models.threads) / models.gemm_flops_per_s[dtype]
        return _family_cost("gemm", flops, nbytes, batch * per_call_s, batch * models.gemm_fixed_s,
                            batch * compute_s)
    return roofline(device, "gemm", flops, nbytes, dtype)


def gemv(device: Device, m: int, k: int, dtype: str = "fp32", batch: int = 1) -> OpCost:
    """``y[m] = A[m,k] @ x[k]``, ``batch`` times; A, x read once and y written once."""
    m, k, batch = _count("m", m), _count("k", k), _count("batch", batch)
    size = itemsize(dtype)
    flops = 2.0 * m * k * batch
    nbytes = float(m * k + k + m) * size * batch
    models = operator_models(device)
    if models is not None:  # weight streaming at the GEMV family's fraction of the staircase
        return _family_cost("gemv", flops, nbytes, batch * models.gemv_s(m, k, size), models.launch_s * batch, 0.0)
    return roofline(device, "gemv", flops, nbytes, dtype)


def elementwise(
    device: Device,
    n: int,
    dtype: str = "fp32",
    inputs: int = 2,
    outputs: int = 1,
    flops_per_element: float = 1.0,
    working_set_bytes: float | None = None,
) -> OpCost:
    """A map over ``n`` elements reading ``inputs`` and writing ``outputs`` arrays of that length."""
    n = _count("n", n)
    inputs = _count("inputs", inputs, minimum=0)
    outputs = _count("outputs", outputs, minimum=0)
    if inputs + outputs == 0:
        raise CostError(f"inputs + outputs must be >= 1, got inputs={inputs}, outputs={outputs}")
    per_element = _amount("flops_per_element", flops_per_element, allow_zero=True)
    size = itemsize(dtype)
    flops = n * per_element
    nbytes = float(n) * (inputs + outputs) * size
    working_set_bytes = _working_set(working_set_bytes)
    models = measured_models(device)
    if models is not None:  # memory-bound: the staircase at its working set
        # the staircase's rates are per call, the call's fixed cost included
        time_s = models.elementwise_s(n, size, inputs, outputs, working_set_bytes)
        return _family_cost("elementwise", flops, nbytes, time_s, 0.0, 0.0)
    return roofline(device, "elementwise", flops, nbytes, dtype)


def softmax(device: Device, rows: int, cols: int, dtype: str = "fp32",
            working_set_bytes: float | None = None) -> OpCost:
    """Row-wise softmax, fused: each row is read once and written once (it fits on chip)."""
    rows, cols = _count("rows", rows), _count("cols", cols)
    size = itemsize(dtype)
    elements = float(rows * cols)
    flops, nbytes = SOFTMAX_FLOPS_PER_ELEMENT * elements, 2.0 * elements * size
    working_set_bytes = _working_set(working_set_bytes)
    models = measured_models(device)
    if models is not None and models.softmax_elements_per_s is not None:
        time_s = models.softmax_s(rows, cols, size, working_set_bytes)
        return _family_cost("softmax", flops, nbytes, time_s, models.launch_s,
                            elements / models.softmax_elements_per_s)
    return roofline(device, "softmax", flops, nbytes, dtype)


def topk(
    device: Device,
    rows: int,
    n: int,
    k: int,
    dtype: str = "fp32",
    comparisons_per_element: float = 1.0,
) -> OpCost:
    """The ``k`` largest of each of ``rows`` rows of ``n`` values, by quick-select.

    Work model: quick-select is expected linear in ``n``; its first partition pass compares every
    element once and later passes shrink geometrically. We count ``comparisons_per_element * n``
    comparisons per row, one FLOP each, with the reference constant 1 (the dominant first pass); a
    caller with a measured constant (ideal halving gives 2, random pivots up to ~3.4) passes it.
    Bytes: the values are read once; k values plus k int32 indices are written per row.
    """
    rows, n, k = _count("rows", rows), _count("n", n), _count("k", k)
    if k > n:
        raise CostError(f"k must be <= n, got k={k}, n={n}")
    per_element = _amount("comparisons_per_element", comparisons_per_element)
    size = itemsize(dtype)
    flops = per_element * rows * n
    nbytes = float(rows) * (n * size + k * (size + INDEX_BYTES))
    models = operator_models(device)
    if models is not None and models.topk_modelled:
        # the selection kernel's algorithm: per-element rate, per-row cost, rows in parallel
        time_s = models.topk_s(rows, n, k, size)
        return _family_cost("topk", flops, nbytes, time_s, models.launch_s, models.topk_select_s(rows, n, k, size))
    return roofline(device, "topk", flops, nbytes, dtype)


def _kept(name: str, kept: int | Sequence[int] | None, total: int, total_name: str) -> int:
    """How many of ``total`` survive pruning: an int count, or distinct indices into ``range(total)``."""
    if kept is None:
        return total
    is_scalar = not isinstance(kept, Iterable) or getattr(kept, "ndim", 1) == 0
    if is_scalar or isinstance(kept, (str, bytes)):
        count = _count(name, kept)
        if count > total:
            raise CostError(f"{name} must be <= {total_name}={total}, got {count}")
        return count
    indices = [_count(f"{name} index", i, minimum=0) for i in kept]  # type: ignore[union-attr]
    if not indices:
        raise CostError(f"{name} must keep at least one, got an empty sequence")
    out_of_range = [i for i in indices if i >= total]
    if out_of_range:
        raise CostError(f"{name} index {out_of_range[0]} out of range for {total_name}={total}")
    if len(set(indices)) != len(indices):
        raise CostError(f"{name} has repeated indices: {sorted(indices)}")
    return len(indices)


def attention(
    device: Device,
    heads: int,
    q_len: int,
    kv_len: int,
    head_dim: int,
    dtype: str = "fp32",
    kept_tokens: int | Sequence[int] | None = None,
    kept_heads: int | Sequence[int] | None = None,
) -> OpCost:
    """Scaled dot-product attention, QK^T -> softmax -> PV, for the kept heads over the kept keys.

    ``kept_tokens`` / ``kept_heads`` (a count or the surviving indices) model token and head pruning:
    pruned keys are neither fetched nor multiplied, pruned heads do nothing at all. Fused
    (flash-attention style): the score matrix stays on chip, so bytes = Q + K + V + output of the
    kept heads = kept_heads * (2 * q_len + 2 * kept_tokens) * head_dim * itemsize.
    FLOPs per kept head: 2*q*L*d (QK^T) + 5*q*L (softmax) + 2*q*L*d (PV), L = kept tokens.
    """
    heads, q_len, kv_len, head_dim = (
        _count("heads", heads),
        _count("q_len", q_len),
        _count("kv_len", kv_len),
        _count("head_dim", head_dim),
    )
    tokens = _kept("kept_tokens", kept_tokens, kv_len, "kv_len")
    kept_h = _kept("kept_heads", kept_heads, heads, "heads")
    size = itemsize(dtype)
    scores = float(q_len * tokens)
    flops = kept_h * (4.0 * scores * head_dim + SOFTMAX_FLOPS_PER_ELEMENT * scores)
    nbytes = float(kept_h) * (2 * q_len + 2 * tokens) * head_dim * size
    models = measured_models(device)
    if models is not None and models.attention_flops_per_s is not None:
        time_s = models.attention_s(kept_h, q_len, tokens, head_dim, size)
        return _family_cost("attention", flops, nbytes, time_s, models.launch_s,
                            4.0 * kept_h * scores * head_dim / models.attention_flops_per_s)
    return roofline(device, "attention", flops, nbytes, dtype)


def memcpy(device: Device, nbytes: float, working_set_bytes: float | None = None) -> OpCost:
    """A device-local copy of ``nbytes``: read once and written once, no arithmetic."""
    nbytes = _amount("nbytes", nbytes)
    working_set_bytes = _working_set(working_set_bytes)
    models = measured_models(device)
    if models is not None:
        return _family_cost("memcpy", 0.0, 2.0 * nbytes, models.copy_s(nbytes, working_set_bytes), 0.0, 0.0)
    return roofline(device, "memcpy", 0.0, 2.0 * nbytes, None)
