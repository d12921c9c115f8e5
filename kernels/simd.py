"""Vector compare-and-compress primitives for Numba kernels (used by the CPU top-k).

Why: the top-k's work is "keep the elements at or above a threshold" and "split values around a
pivot". Written as scalar loops these cost ~2 cycles per element whatever the branch-free tricks;
as one 512-bit compare giving a bit mask and one compress (AVX-512 ``vcompress``) of the lanes
whose bit is set, they cost a fraction of a cycle, so a pass over a long row runs at memory speed.

Each primitive works on one block of :func:`lanes` consecutive elements (16 float32 or 8 float64)
starting at ``base``; ``base + lanes`` must not pass the end of the input. A store writes a whole
block's worth of lanes at ``out[m:]`` (only the first ``popcount(bits)`` are meaningful) and
returns ``m + popcount(bits)``, so every output buffer needs :data:`SLACK` spare elements at its end.

On a CPU with AVX-512 (F and VL) a store compresses in a register and writes one full vector; on
any other CPU it lowers to LLVM's generic masked compress-store, which LLVM expands lane by lane:
the same results, without the speed. :data:`HAVE_AVX512` says which one this process compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

__all__ = [
    "HAVE_AVX512",
    "SLACK",
    "eq_mask",
    "ge_or_nan_mask",
    "gt_mask",
    "lanes",
    "nan_mask",
    "popcount",
    "store_indices",
    "store_values",
]

SLACK = 16
"""Spare elements every output buffer of a store needs past its last meaningful one."""


def _host_has_avx512() -> bool:
    """True when Numba compiles for this CPU (no ``NUMBA_CPU_NAME`` override) and it has AVX-512 F+VL."""
    if getattr(config, "CPU_NAME", None):  # compiling for another CPU: the x86 compress may not exist there
        return False
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return bool(features.get("avx512f")) and bool(features.get("avx512vl"))


HAVE_AVX512 = _host_has_avx512()

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _width(dtype: Any) -> int:
    """Lanes of a 512-bit vector of ``dtype`` (16 float32 / int32, 8 float64)."""
    return 512 // int(dtype.bitwidth)


def _splat(builder: ir.IRBuilder, vector: ir.VectorType, value: ir.Value) -> ir.Value:
    undef = ir.Constant(vector, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vector.count), [0] * vector.count))


def _load_block(context: Any, builder: ir.IRBuilder, array_type: Any, array: ir.Value, base: ir.Value) -> ir.Value:
    ary = context.make_array(array_type)(context, builder, array)
    element = context.get_value_type(array_type.dtype)
    vector = ir.VectorType(element, _width(array_type.dtype))
    pointer = builder.bitcast(builder.gep(ary.data, [base]), vector.as_pointer())
    return builder.load(pointer, align=int(array_type.dtype.bitwidth) // 8)


def _mask_bits(builder: ir.IRBuilder, mask: ir.Value) -> ir.Value:
    """A vector of i1 as the low bits of a uint32 (bit i: lane i)."""
    return builder.zext(builder.bitcast(mask, ir.IntType(mask.type.count)), _I32)


def _compress_store(builder: ir.IRBuilder, out_pointer: ir.Value, vector: ir.Value, bits: ir.Value) -> None:
    """Lanes of ``vector`` whose bit is set, packed to the front, written at ``out_pointer``."""
    vtype = vector.type
    width = vtype.count
    mask_type = ir.VectorType(ir.IntType(1), width)
    mask = builder.bitcast(builder.trunc(bits, ir.IntType(width)), mask_type)
    element = vtype.element
    suffix = f"v{width}{'f' if isinstance(element, (ir.FloatType, ir.DoubleType)) else 'i'}{_bits_of(element)}"
    if HAVE_AVX512:
        fnty = ir.FunctionType(vtype, [vtype, vtype, mask_type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.x86.avx512.mask.compress.{suffix}")
        packed = builder.call(fn, [vector, ir.Constant(vtype, ir.Undefined), mask])
        builder.store(packed, builder.bitcast(out_pointer, vtype.as_pointer()), align=_bits_of(element) // 8)
    else:
        element_pointer = builder.bitcast(out_pointer, element.as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [vtype, element_pointer.type, mask_type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.compressstore.{suffix}")
        builder.call(fn, [vector, element_pointer, mask])


def _bits_of(element: ir.Type) -> int:
    if isinstance(element, ir.FloatType):
        return 32
    if isinstance(element, ir.DoubleType):
        return 64
    return int(element.width)


@intrinsic
def _lanes(typingctx: Any, array_t: Any) -> Any:
    """Elements per block for ``array``'s dtype (a compile-time constant)."""
    width = _width(array_t.dtype)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        return ir.Constant(_I64, width)

    return types.int64(array_t), codegen


def _compare_mask(name: str, op: str, ordered: bool, doc: str) -> Any:
    """An intrinsic ``(array, base, value) -> uint32`` whose bit ``i`` is ``array[base + i] <op> value``
    (``ordered``: a NaN lane compares false; unordered: true)."""

    def typer(typingctx: Any, array_t: Any, base_t: Any, value_t: Any) -> Any:
        if not isinstance(array_t, types.Array) or not isinstance(array_t.dtype, types.Float):
            return None

        def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
            array, base, value = args
            block = _load_block(context, builder, signature.args[0], array, base)
            value = context.cast(builder, value, signature.args[2], signature.args[0].dtype)
            compare = builder.fcmp_ordered if ordered else builder.fcmp_unordered
            return _mask_bits(builder, compare(op, block, _splat(builder, block.type, value)))

        return types.uint32(array_t, types.int64, value_t), codegen

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


_ge_or_nan_mask = _compare_mask(
    "_ge_or_nan_mask", ">=", False, "Bits of ``array[base:base+lanes] >= threshold``, NaN lanes set too: a filter "
    "that keeps NaNs as candidates finds them later among the few it kept.")
_gt_mask = _compare_mask("_gt_mask", ">", True, "Bits of ``array[base:base+lanes] > pivot`` (a NaN lane is 0).")
_eq_mask = _compare_mask("_eq_mask", "==", True, "Bits of ``array[base:base+lanes] == value``.")


@intrinsic
def _store_indices(typingctx: Any, out_t: Any, m_t: Any, base_t: Any, bits_t: Any, like_t: Any) -> Any:
    """Write ``base + i`` for every set bit ``i`` (``like``'s lane count: pass the array the bits came
    from) to int32 ``out[m:]`` in order; return ``m + popcount(bits)``."""
    if not isinstance(out_t, types.Array) or out_t.dtype != types.int32:
        return None
    width = _width(like_t.dtype)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        out, m, base, bits, _ = args
        ary = context.make_array(signature.args[0])(context, builder, out)
        vector = ir.VectorType(_I32, width)
        index = builder.add(_splat(builder, vector, builder.trunc(base, _I32)), ir.Constant(vector, list(range(width))))
        _compress_store(builder, builder.gep(ary.data, [m]), index, bits)
        return builder.add(m, builder.zext(builder.ctpop(bits), _I64))

    return types.int64(out_t, types.int64, types.int64, types.uint32, like_t), codegen


@intrinsic
def _store_values(typingctx: Any, out_t: Any, m_t: Any, src_t: Any, base_t: Any, bits_t: Any, like_t: Any) -> Any:
    """Write ``src[base + i]`` for every set bit ``i`` (``like``'s lane count: pass the array the bits
    came from) to ``out[m:]`` in order; return ``m + popcount(bits)``."""
    if not isinstance(out_t, types.Array) or not isinstance(src_t, types.Array) or out_t.dtype != src_t.dtype:
        return None
    width = _width(like_t.dtype)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        out, m, src, base, bits, _ = args
        src_ary = context.make_array(signature.args[2])(context, builder, src)
        vector = ir.VectorType(context.get_value_type(signature.args[2].dtype), width)
        pointer = builder.bitcast(builder.gep(src_ary.data, [base]), vector.as_pointer())
        block = builder.load(pointer, align=int(signature.args[2].dtype.bitwidth) // 8)
        ary = context.make_array(signature.args[0])(context, builder, out)
        _compress_store(builder, builder.gep(ary.data, [m]), block, bits)
        return builder.add(m, builder.zext(builder.ctpop(bits), _I64))

    return types.int64(out_t, types.int64, src_t, types.int64, types.uint32, like_t), codegen


@intrinsic
def _nan_mask(typingctx: Any, array_t: Any, base_t: Any) -> Any:
    """Bits of the NaN lanes of ``array[base:base+lanes]``."""
    if not isinstance(array_t, types.Array) or not isinstance(array_t.dtype, types.Float):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        array, base = args
        block = _load_block(context, builder, signature.args[0], array, base)
        return _mask_bits(builder, builder.fcmp_unordered("uno", block, block))

    return types.uint32(array_t, types.int64), codegen


@intrinsic
def _popcount(typingctx: Any, bits_t: Any) -> Any:
    """Set bits of a uint32 mask."""
    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        (bits,) = args
        return builder.zext(builder.ctpop(bits), _I64)

    return types.int64(types.uint32), codegen


# What Numba code calls (the intrinsics above, typed for readers and type checkers as what they return).
lanes = cast("Callable[..., int]", _lanes)
ge_or_nan_mask = cast("Callable[..., int]", _ge_or_nan_mask)
gt_mask = cast("Callable[..., int]", _gt_mask)
eq_mask = cast("Callable[..., int]", _eq_mask)
nan_mask = cast("Callable[..., int]", _nan_mask)
popcount = cast("Callable[..., int]", _popcount)
store_indices = cast("Callable[..., int]", _store_indices)
store_values = cast("Callable[..., int]", _store_values)
