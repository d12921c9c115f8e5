"""Per-family operator models: each kernel family priced by the resource its algorithm uses.

A single roofline with one efficiency curve cannot predict both a large GEMM and a decode GEMV: each
family reaches its own fraction of peak, and a working set's bandwidth depends on which level of the
memory hierarchy holds it. :class:`OperatorModels` holds what calibration measured (never a number
fitted to a validation case):

* a memory **staircase**: read and read+write bandwidth at working-set sizes from L1 to DRAM,
  interpolated in log(size) between measured steps;
* per-family rates: GEMM (with tile and wave quantization), GEMV / skinny GEMM, softmax, top-k
  (per-element rate of the selection kernel), attention, the decode linear layer;
* interference coefficients for two kernels at once (see :mod:`hwsim.systems.overlap`).

Every function returns seconds. Pure Python + math: importable on a bare GPU box.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwsim.errors import CostError, HardwareError
from hwsim.hardware.schema import spec


@dataclass(frozen=True)
class MemoryStep:
    """Bandwidth measured at one working-set size (bytes touched by the kernel)."""

    working_set_bytes: float = spec(
        "working_set", "bytes the kernel touches; rates are per call of a kernel of that size, its fixed cost "
        "included, so a memory-bound call takes bytes / rate (log-size interpolation between steps)",
        unit="bytes", exclusive_minimum=0)
    read_bytes_per_s: float = spec("read", "rate of a read-only pass (sum) at this working set",
                                   unit="bytes_per_s", exclusive_minimum=0)
    read_write_bytes_per_s: float = spec("read_write", "rate of a read+write pass (triad) at this working set",
                                         unit="bytes_per_s", exclusive_minimum=0)
    copy_bytes_per_s: float | None = spec(
        "copy", "a plain (library) copy's rate, bytes read + written; unset: the triad's", unit="bytes_per_s",
        exclusive_minimum=0, default=None)
    weights_bytes_per_s: float | None = spec(
        "weights", "rate at which the weight-streaming skinny GEMM (decode projections) reads a weight matrix "
        "of this size with one input row, its dot products included; unset: read x skinny_read_fraction",
        unit="bytes_per_s", exclusive_minimum=0, default=None)


@dataclass(frozen=True)
class GatherStep:
    """Time per cache line of a strided gather (one element per line) over an array of one size."""

    working_set_bytes: float = spec("working_set", "bytes of the array gathered from (log-size interpolation "
                                    "between steps)", unit="bytes", exclusive_minimum=0)
    line_s: float = spec("line", "time per line gathered: each a separate load the prefetchers mostly miss, so "
                         "bound by latency more than by the level's streaming rate", unit="s", exclusive_minimum=0)


@dataclass(frozen=True)
class Interference:
    """Slowdown of each of two kernels run at once, by what each is bound by (1.0 = no interference).

    Fitted from microbenchmark pairs: stream+stream (``memory_memory``), FMA+FMA (``compute_compute``)
    and FMA+stream (``compute_memory``). On a CPU with two vCPUs the FMA pair slows because the vCPUs
    share a physical core or clock budget, not memory.
    """

    memory_memory: float = spec("memory_memory", "slowdown of each of two memory-bound kernels at once (pair "
                                "stream+stream, both from DRAM: what sharing its bandwidth costs; sharing the "
                                "caches comes from the staircase)", exclusive_minimum=0, default=1.0)
    compute_compute: float = spec("compute_compute", "slowdown of each of two compute-bound kernels at once "
                                  "(pair FMA+FMA)", exclusive_minimum=0, default=1.0)
    compute_memory: float = spec("compute_memory", "slowdown of a compute-bound kernel next to a memory-bound one "
                                 "and vice versa (pair FMA+stream)", exclusive_minimum=0, default=1.0)

    def slowdown(self, mine_memory: float, other_memory: float, dram: float = 1.0) -> float:
        """Slowdown of a kernel whose time is ``mine_memory`` memory-bound (0..1) next to another.

        ``dram`` (0..1): how much of the two memory-bound kernels' traffic DRAM serves (the product
        of their DRAM shares). ``memory_memory`` is what sharing DRAM bandwidth costs, so two streams
        that both live in the caches do not pay it (sharing the caches is priced from the staircase,
        :func:`shared_caches_s`). Measured here: two c = a + b threads of 20 MiB each (both in
        the last-level cache) ran as fast together as alone, while the DRAM pair's slowdown was 1.18."""
        a, b = _unit(mine_memory), _unit(other_memory)
        return (
            a * b * (1.0 + (self.memory_memory - 1.0) * _unit(dram))
            + (1 - a) * (1 - b) * self.compute_compute
            + (a * (1 - b) + (1 - a) * b) * self.compute_memory
        )


def _log_size_interpolation(log_sizes: Sequence[float], values: Sequence[float], size: float) -> float:
    """A value measured at increasing sizes (given as their logs), at ``size``: linear in log size
    and log value between two measurements, the nearest one outside them."""
    x = math.log(max(size, 1.0))
    if x <= log_sizes[0]:
        return values[0]
    if x >= log_sizes[-1]:
        return values[-1]
    i = bisect.bisect_right(log_sizes, x)
    w = (x - log_sizes[i - 1]) / (log_sizes[i] - log_sizes[i - 1])
    return math.exp(math.log(values[i - 1]) * (1 - w) + math.log(values[i]) * w)


def _unit(x: float) -> float:
    return min(1.0, max(0.0, float(x)))


def _per(amount: float, rate: float | None) -> float:
    """Seconds to do ``amount`` at ``rate``; an unmeasured rate (None) costs nothing (no limit)."""
    return 0.0 if rate is None else amount / rate


#: The CPU top-k's tuning (kernels/topk.py: ``_SAMPLE``, 8x for rows of 2^20 or more; ``_SIGMAS``;
#: ``_DIRECT_MAX``, the longest row selected directly; ``_SPARSE_BELOW``, the candidate fraction
#: 1/x under which the filter tests each block before storing it); the cost model counts the work
#: they imply. ``TOPK_VECTOR_BYTES``: one AVX-512 block; ``CACHE_LINE_BYTES``: one x86 cache line.
TOPK_SAMPLE = 1024
TOPK_SIGMAS = 2.0
TOPK_DIRECT_MAX = 1024
TOPK_SPARSE_BELOW = 32
TOPK_VECTOR_BYTES = 64
CACHE_LINE_BYTES = 64


@dataclass(frozen=True)
class TopkWork:
    """What the CPU top-k does per row (kernels/topk.py's docstring gives the algorithm)."""

    selection_elements: float  # vector quick-select and compaction work (elements partitioned or packed)
    hit_blocks: float          # blocks stored behind a test (sparse filter, pack): each a likely mispredict
    sample_lines: float        # cache lines the strided sample touches
    filtered: bool             # the row is read by the filter pass (long rows)
    dense_blocks: float = 0.0  # blocks the dense filter stores without a test (every block of the row)


def quickselect_elements(m: float, rank: float) -> float:
    """Expected elements partitioned by median-of-three quick-select to find rank ``rank`` of ``m``:
    ``m * (2 + 3 a (1 - a))`` with ``a = rank / m`` (Kirschenhofer, Prodinger & Martinez, "Analysis
    of Hoare's FIND algorithm with median-of-three partition", Random Struct. Alg. 1997): about 2m
    for an extreme rank, 2.75m for the median. Each pass of the vector kernel partitions every
    element it keeps, so its work is this count."""
    if m <= 0:
        return 0.0
    a = min(1.0, max(0.0, rank / m))
    return m * (2.0 + 3.0 * a * (1.0 - a))


def topk_work(n: int, k: int, itemsize: float = 4.0) -> TopkWork:
    """The kernel's work for a row of ``n`` and a given ``k``: a short row is quick-selected itself
    (:func:`quickselect_elements`, 2n to 2.75n by where k falls) and packed (n); a long row gathers
    a strided sample of ``s`` and quick-selects its threshold rank in it, filters the row in blocks
    (a block with a candidate is stored; in the sparse filter the others cost only a compare, a test
    and, when the test is unpredictable, a mispredicted branch, which the per-block cost absorbs),
    then quick-selects rank k among the ``m`` candidates and packs them.

    A block stored behind a test (the sparse filter's, the pack's) and a block the dense filter
    stores without one are counted apart: the test mispredicts about once per block that stores,
    and on this machine that made such a block cost several times a dense one (4 rows of 100,000 in
    the L2: 11.6 us per row at k = 16, 21.5 at k = 1024 with the sparse filter, 19.5 at k = 2048 with
    the dense one)."""
    cap = TOPK_SAMPLE if n < (1 << 20) else 8 * TOPK_SAMPLE
    s = min(n // 8, max(64, (16 * n) // max(k, 1)), cap)
    lanes = max(1.0, TOPK_VECTOR_BYTES / itemsize)

    def stored_blocks(m: float, fraction: float) -> float:
        """Blocks of ``m`` elements holding at least one of a random ``fraction`` of them (each is stored)."""
        return m / lanes * (1.0 - (1.0 - min(max(fraction, 0.0), 1.0)) ** lanes)

    # the pack stores every block that holds one of the k taken elements, as the filter does
    direct = TopkWork(quickselect_elements(n, k) + n, stored_blocks(n, k / max(n, 1)), 0.0, False)
    if n <= TOPK_DIRECT_MAX or k >= n or s < 16:
        return direct
    expected = k * s / n
    rank = int(expected + TOPK_SIGMAS * math.sqrt(expected) + 2.0)
    if rank >= s - 1:
        return direct
    candidates = min(float(n), n * (rank + 1) / s)
    blocks = n / lanes
    sparse = (rank + 1) * TOPK_SPARSE_BELOW < s
    hit_blocks = stored_blocks(n, (rank + 1) / s) if sparse else 0.0
    lines = min(float(s), n * itemsize / CACHE_LINE_BYTES)
    selection = s + quickselect_elements(s, rank + 1) + quickselect_elements(candidates, k) + candidates
    return TopkWork(selection, hit_blocks + stored_blocks(candidates, k / candidates), lines, True,
                    0.0 if sparse else blocks)


@dataclass(frozen=True)
class OperatorModels:
    """A device's calibrated per-family parameters (SI units; rates per second).

    Declared with the hardware schema: a hardware file carries them as ``device.operators``
    (written by ``hwsim hw calibrate``). A rate left unset (None) was not measured and limits nothing.
    """

    threads: int = spec("threads", "compute units the kernels ran on when calibrated (CPU threads or GPU SMs)",
                        minimum=1)
    launch_s: float = spec("launch", "fixed cost of starting one parallel kernel", unit="s", minimum=0)
    staircase: tuple[MemoryStep, ...] = spec(
        "staircase", "memory bandwidth by working-set size, strictly increasing sizes", non_empty=True)
    gemm_flops_per_s: Mapping[str, float] = spec(
        "gemm_rate", "rate of a large GEMM per dtype, on whole tiles", unit="flop_per_s", exclusive_minimum=0,
        non_empty=True)
    gemm_fixed_s: float = spec("gemm_fixed", "fixed cost of one GEMM call", unit="s", minimum=0)
    gemm_tile_m: int = spec("gemm_tile_m", "output-tile rows one unit computes at a time (wave = threads tiles)",
                            minimum=1, default=64)
    gemm_tile_n: int = spec("gemm_tile_n", "output-tile columns one unit computes at a time", minimum=1, default=64)
    gemm_pack_moves: float = spec(
        "gemm_pack_moves", "passes over the packed bytes priced at the staircase read+write rate, on top of "
        "gemm_pack_rate: the first (packing reads the operands) at the operands' working set, the others (the "
        "tiles read the panels) at the panels' own size; 0: the packing is priced by gemm_pack_rate alone",
        minimum=0, default=0.0)
    gemm_pack_bytes_per_s: float | None = spec(
        "gemm_pack_rate", "rate at which a GEMM call packs its operands (A and B, once per call) before the tiles "
        "run: what keeps a GEMM with few rows far from peak", unit="bytes_per_s", exclusive_minimum=0, default=None)
    gemv_read_fraction: float = spec("gemv_read_fraction", "fraction of the staircase read bandwidth a GEMV "
                                     "reaches (from the caches, up to gemv_cache)", exclusive_minimum=0, default=1.0)
    gemv_cache_bytes: float | None = spec(
        "gemv_cache", "largest working set at which gemv_read_fraction was measured", unit="bytes",
        exclusive_minimum=0, default=None)
    gemv_dram_read_fraction: float | None = spec(
        "gemv_dram_read_fraction", "fraction of the staircase read bandwidth a GEMV reaches from memory (at "
        "gemv_dram and past it; log-size interpolation from gemv_cache); unset: gemv_read_fraction everywhere",
        exclusive_minimum=0, default=None)
    gemv_dram_bytes: float | None = spec(
        "gemv_dram", "working set at which gemv_dram_read_fraction was measured", unit="bytes", exclusive_minimum=0,
        default=None)
    copy_fraction: float = spec("copy_fraction", "fraction of the staircase copy rate a plain copy reaches",
                                exclusive_minimum=0, default=1.0)
    copy_nontemporal_bytes: float | None = spec(
        "copy_nontemporal", "bytes one thread copies in one call from which the C library writes past the caches "
        "with non-temporal stores (glibc's x86_non_temporal_threshold); unset: a copy has one regime",
        unit="bytes", exclusive_minimum=0, default=None)
    copy_nontemporal_bytes_per_s: float | None = spec(
        "copy_nontemporal_rate", "rate of a copy at or past copy_nontemporal per thread, bytes read + written "
        "(from memory, whatever its size)", unit="bytes_per_s", exclusive_minimum=0, default=None)
    softmax_elements_per_s: float | None = spec("softmax_rate", "elements per second of the row softmax (exp-bound)",
                                                exclusive_minimum=0, default=None)
    topk_elements_per_s: float | None = spec(
        "topk_rate", "per-element rate of the top-k kernel's pass over a row (GPU: one block per row); unset on "
        "a CPU, whose pass is priced by topk_stream_factor", exclusive_minimum=0, default=None)
    topk_call_s: float = spec("topk_call", "fixed cost of one top-k call beyond the launch (argument checks, "
                              "buffers)", unit="s", minimum=0, default=0.0)
    topk_row_s: float = spec("topk_row", "fixed cost per row of the top-k kernel (setting up its passes)",
                             unit="s", minimum=0, default=0.0)
    topk_select_element_s: float = spec(
        "topk_select_element", "time per element of the CPU top-k's vector quick-select and packing work (see "
        "topk_work)", unit="s", minimum=0, default=0.0)
    topk_hit_block_s: float = spec(
        "topk_hit_block", "time per block of the CPU top-k stored behind a test (sparse filter, pack): the store "
        "and the test's likely mispredict", unit="s", minimum=0, default=0.0)
    topk_dense_block_s: float = spec(
        "topk_dense_block", "time per block the CPU top-k's dense filter stores without a test (every block of "
        "the row)", unit="s", minimum=0, default=0.0)
    topk_gather_factor: float = spec(
        "topk_gather_factor", "the CPU top-k's strided sample: time per touched cache line, in units of one line "
        "gathered at one row's size (gather) or, without it, of one line read at the staircase bandwidth",
        minimum=0, default=0.0)
    gather: tuple[GatherStep, ...] = spec(
        "gather", "time per cache line of a strided gather by array size, strictly increasing sizes; empty: a "
        "line is priced as streamed", default=())
    topk_stream_factor: float = spec(
        "topk_stream_factor", "the CPU top-k's filter pass: its time in units of reading the rows at the staircase "
        "bandwidth, added to the selection work (0: reading overlaps selection, as on a GPU)", minimum=0,
        default=0.0)
    topk_parallel_rows: int = spec(
        "topk_parallel_rows", "rows selected at once, each at topk_rate (GPU: one block per row; CPU: 1, the rate "
        "counts all threads)", minimum=1, default=1)
    attention_flops_per_s: float | None = spec(
        "attention_rate", "rate of the fused attention kernel's dot products (K, V in cache)", unit="flop_per_s",
        exclusive_minimum=0, default=None)
    gather_bytes_per_s: float | None = spec(
        "gather_bandwidth", "rate of fetching the kept (pruned, scattered) K/V rows the first time",
        unit="bytes_per_s", exclusive_minimum=0, default=None)
    skinny_flops_per_s: float | None = spec(
        "skinny_rate", "dot-product rate of the weight-streaming skinny GEMM (decode projections)",
        unit="flop_per_s", exclusive_minimum=0, default=None)
    skinny_read_fraction: float = spec("skinny_read_fraction", "fraction of the staircase read bandwidth at which "
                                       "the skinny GEMM streams its weights", exclusive_minimum=0, default=1.0)
    decode_attention_flops_per_s: float | None = spec(
        "decode_attention_rate", "dot-product rate of decode attention over a contiguous K/V cache",
        unit="flop_per_s", exclusive_minimum=0, default=None)
    dispatch_slot_s: float = spec("dispatch_slot", "MoE dispatch: cost per (token, expert) slot beyond its row copy",
                                  unit="s", minimum=0, default=0.0)
    interference: Interference = spec("interference", "slowdown of two kernels at once, by what each is bound by",
                                      default=Interference())
    core_reference_s: float | None = spec(
        "core_reference", "fastest thread CPU time of the core-speed reference kernel during calibration "
        "(kernels.measure.speed_reference_s): a later single-thread measurement keeps only samples taken while "
        "the core ran about as fast", unit="s", exclusive_minimum=0, default=None)

    def schema_problems(self) -> list[tuple[str, str]]:
        """Rules across fields (YAML key, message): the loader and sweep overrides apply them."""
        problems = []
        for key, steps in (("staircase", self.staircase), ("gather", self.gather)):
            sizes = [s.working_set_bytes for s in steps]
            if sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
                problems.append((key, f"working sets must be strictly increasing, got {sizes}"))
        return problems

    def __post_init__(self) -> None:
        if not self.staircase:
            raise CostError("staircase must hold at least one MemoryStep")
        if self.threads < 1:
            raise CostError(f"threads must be >= 1, got {self.threads}")

    @property
    def weights_measured(self) -> bool:
        """Every staircase step carries the skinny GEMM's own weight-streaming rate."""
        return all(s.weights_bytes_per_s is not None for s in self.staircase)

    @property
    def weights_peak(self) -> MemoryStep:
        """The step where the weights kind streams fastest: the level a computing stream still
        finds its data in time (L1/L2 here)."""
        return max(self.staircase, key=lambda s: s.weights_bytes_per_s or 0.0)

    @property
    def gemm_tile(self) -> tuple[int, int]:
        """Output tile (rows, cols) one unit computes at a time."""
        return (self.gemm_tile_m, self.gemm_tile_n)

    # ------------------------------------------------------------------ memory staircase

    def bandwidth(self, working_set_bytes: float, *, write: bool, copy: bool = False, weights: bool = False) -> float:
        """Bandwidth (B/s) at this working set: log-size interpolation between measured steps."""
        steps = self.staircase
        xs = [math.log(s.working_set_bytes) for s in steps]
        if weights:
            ys = [s.weights_bytes_per_s or s.read_bytes_per_s * self.skinny_read_fraction for s in steps]
        elif copy:
            ys = [s.copy_bytes_per_s or s.read_write_bytes_per_s for s in steps]
        else:
            ys = [s.read_write_bytes_per_s if write else s.read_bytes_per_s for s in steps]
        return _log_size_interpolation(xs, ys, working_set_bytes)

    def stream_s(self, read_bytes: float, written_bytes: float, working_set_bytes: float | None = None) -> float:
        """Time of a memory-bound pass (no launch): read+write bandwidth when it writes, read bandwidth when not."""
        total = read_bytes + written_bytes
        if total <= 0:
            return 0.0
        ws = total if working_set_bytes is None else working_set_bytes
        return total / self.bandwidth(ws, write=written_bytes > 0)

    # ------------------------------------------------------------------ families

    def copy_s(self, nbytes: float, working_set_bytes: float | None = None) -> float:
        """Copy ``nbytes``: read once, written once. ``working_set_bytes`` (here and below): what the
        data competes with for the caches between two runs (alone: its own bytes; inside a sequence
        of ops: the whole sequence's footprint). A copy large enough to write past the caches
        (:meth:`copies_past_caches`) runs at ``copy_nontemporal_bytes_per_s`` instead."""
        if self.copies_past_caches(nbytes):
            return 2.0 * nbytes / self.copy_nontemporal_bytes_per_s  # type: ignore[operator]
        ws = max(2.0 * nbytes, working_set_bytes or 0.0)
        return 2.0 * nbytes / (self.bandwidth(ws, write=True, copy=True) * self.copy_fraction)

    def copies_past_caches(self, nbytes: float) -> bool:
        """Whether a copy of ``nbytes`` writes with non-temporal stores: each of the ``threads``
        threads copies its share of the range in one library call, and a share at or past
        ``copy_nontemporal_bytes`` skips the caches (no read of the destination's lines first)."""
        return (self.copy_nontemporal_bytes is not None and self.copy_nontemporal_bytes_per_s is not None
                and nbytes / self.threads >= self.copy_nontemporal_bytes)

    def elementwise_s(self, n: int, itemsize: float, inputs: int, outputs: int,
                      working_set_bytes: float | None = None) -> float:
        """A map over ``n`` elements (triad: inputs=2, outputs=1), memory-bound."""
        read, written = n * itemsize * inputs, n * itemsize * outputs
        return self.stream_s(read, written, max(read + written, working_set_bytes or 0.0))

    def gemm_s(self, m: int, n: int, k: int, itemsize: float, dtype: str,
               working_set_bytes: float | None = None) -> float:
        """GEMM with tile and wave quantization: ``waves`` rounds of ``threads`` output tiles, each
        costing ``2 * tile_m * tile_n * k`` FLOP at the per-unit rate; operands streamed at the
        staircase read bandwidth; the slower of the two, plus the packing of both operands (its cost
        grows with ``k * (m + n)``, not with ``m * n * k``, so it is what a GEMM with few rows pays
        relatively most: a small per-expert MoE GEMM) and the fixed cost.

        ``working_set_bytes``: what the operands compete with for the caches between two calls (a
        GEMM repeated on its own operands: its operands; one expert's GEMM in a MoE layer: every
        expert's weights). With ``gemm_pack_moves`` set, the packing's bytes also move through the
        memory levels (:meth:`gemm_pack_moves_s`) on top of the per-byte packing work
        (``gemm_pack_rate``). Measured here, one thread: the overhead beyond the FLOPs came to
        0.04-0.05 ns per packed byte with the operands in the L2 (32 x 1024 x 256: 127 us for 76 us
        of FLOPs) and 0.06-0.12 ns with them in the L3; a single rate fitted on the latter priced the
        former 20-70% slow. (Without it: a rate calibrated with the operands cached, plus the
        read-time difference where a larger working set evicts them.)"""
        rate = self.gemm_flops_per_s.get(dtype)
        if rate is None:
            raise CostError(f"no calibrated GEMM rate for dtype {dtype!r}; have {sorted(self.gemm_flops_per_s)}")
        compute = gemm_padded_flops(m, n, k, self.gemm_tile, self.threads) / rate
        nbytes = (m * k + k * n + m * n) * itemsize
        packed = gemm_pack_bytes(m, n, k, itemsize)
        pack = _per(packed, self.gemm_pack_bytes_per_s)
        if self.gemm_pack_moves > 0:
            pack += self.gemm_pack_moves_s(m, n, k, itemsize, working_set_bytes)
        elif pack and working_set_bytes is not None and working_set_bytes > nbytes:
            pack += max(0.0, packed / self.bandwidth(working_set_bytes, write=False)
                        - packed / self.bandwidth(nbytes, write=False))
        return self.gemm_fixed_s + pack + max(compute, self.stream_s(nbytes, 0.0))

    def gemm_pack_moves_s(self, m: int, n: int, k: int, itemsize: float,
                          working_set_bytes: float | None = None) -> float:
        """The GEMM packing's bytes through the memory levels: one pass (reading the operands) at the
        staircase read+write rate of the operands' working set (``working_set_bytes`` when larger: in
        a MoE layer every expert's weights), the other ``gemm_pack_moves - 1`` (the tiles reading the
        panels, freshly written) at the rate of the panels' own size. A repeated GEMM with operands
        past the L2 pays both from the L3; one expert's 1 MB weights in a layer are read from the L3
        once, their panels from the L2."""
        packed = gemm_pack_bytes(m, n, k, itemsize)
        operands = max((m * k + k * n + m * n) * itemsize, working_set_bytes or 0.0)
        first = min(self.gemm_pack_moves, 1.0) * packed / self.bandwidth(operands, write=True)
        return first + max(self.gemm_pack_moves - 1.0, 0.0) * packed / self.bandwidth(packed, write=True)

    def gemv_s(self, m: int, k: int, itemsize: float, batch: int = 1,
               working_set_bytes: float | None = None) -> float:
        """``y = A x`` (``batch`` right-hand sides share one read of A): weight streaming.
        ``working_set_bytes``: what A competes with for the caches between two calls (alone: itself)."""
        nbytes = (m * k + batch * (k + m)) * itemsize
        fraction = self.gemv_fraction(nbytes if working_set_bytes is None else working_set_bytes)
        return self.launch_s + self.stream_s(nbytes, 0.0, working_set_bytes) / fraction

    def gemv_fraction(self, working_set_bytes: float) -> float:
        """Fraction of the read bandwidth a GEMV reaches at this working set: ``gemv_read_fraction`` up
        to ``gemv_cache``, ``gemv_dram_read_fraction`` from ``gemv_dram`` on, log-size interpolation
        between (both measured by calibration)."""
        lo, hi, far = self.gemv_cache_bytes, self.gemv_dram_bytes, self.gemv_dram_read_fraction
        if far is None or lo is None or hi is None or working_set_bytes <= lo:
            return self.gemv_read_fraction
        if working_set_bytes >= hi or hi <= lo:
            return far
        w = math.log(working_set_bytes / lo) / math.log(hi / lo)
        return self.gemv_read_fraction * (1.0 - w) + far * w

    def softmax_s(self, rows: int, cols: int, itemsize: float, working_set_bytes: float | None = None) -> float:
        elements = float(rows) * cols
        nbytes = elements * itemsize
        return self.launch_s + max(
            _per(elements, self.softmax_elements_per_s),
            self.stream_s(nbytes, nbytes, max(2.0 * nbytes, working_set_bytes or 0.0)),
        )

    def topk_s(self, rows: int, n: int, k: int, itemsize: float) -> float:
        """Top-k by the kernel's algorithm (:func:`topk_work`): per call and per row costs, the
        quick-select and filter-block work, the strided sample, and the filter's pass over long rows
        (added on a CPU, whose filter pass *is* the read; overlapping the selection where the factor
        is 0); never faster than reading the values from the memory level they live in."""
        work = topk_work(n, k, itemsize)
        read = self.stream_s(float(rows) * n * itemsize, 0.0)
        select = self.topk_select_s(rows, n, k, itemsize, work)
        filter_pass = self.topk_stream_factor * read if work.filtered else 0.0
        return self.launch_s + self.topk_call_s + max(select + filter_pass, read)

    def topk_select_s(self, rows: int, n: int, k: int, itemsize: float = 4.0, work: TopkWork | None = None) -> float:
        """The top-k's own work, rows in waves: per-element rate (GPU), per-row cost, quick-select
        and filter-block work, and the sample's cache lines (CPU). ``work``: :func:`topk_work` of the
        same arguments, when the caller has it."""
        work = work if work is not None else topk_work(n, k, itemsize)
        line_s = self.topk_sample_line_s(rows, n, itemsize)
        per_row = (_per(n, self.topk_elements_per_s) + self.topk_row_s
                   + self.topk_select_element_s * work.selection_elements
                   + self.topk_hit_block_s * work.hit_blocks
                   + self.topk_dense_block_s * work.dense_blocks
                   + self.topk_gather_factor * work.sample_lines * line_s)
        return math.ceil(rows / self.topk_parallel_rows) * per_row

    def topk_sample_line_s(self, rows: int, n: int, itemsize: float = 4.0) -> float:
        """Time per cache line of the top-k's strided sample: gathered (:meth:`gather_line_s`) from
        one row, which is what the sample reads at a time, where the gather is measured; else a
        line streamed at the level all the rows live in. Fitted on the calibration's own top-k
        timings, pricing the sample by the rows' whole size instead left residuals of up to 39%
        (here); by one row's size, within 9%."""
        if self.gather:
            return self.gather_line_s(float(n) * itemsize)
        return CACHE_LINE_BYTES / self.bandwidth(float(rows) * n * itemsize, write=False)

    def gather_line_s(self, working_set_bytes: float) -> float:
        """Time per cache line of a strided gather over an array of this size: the measured gather
        steps (log-size interpolation, clamped), else one line read at the staircase bandwidth.
        Measured here, one element per 512 B: 1.0-1.3 ns per line from the L2 and 6.4 ns from a
        4 MiB row in the L3, against 0.67 and 2.1 ns for a line streamed from those levels."""
        if not self.gather:
            return CACHE_LINE_BYTES / self.bandwidth(working_set_bytes, write=False)
        return _log_size_interpolation([math.log(g.working_set_bytes) for g in self.gather],
                                       [g.line_s for g in self.gather], working_set_bytes)

    @property
    def topk_modelled(self) -> bool:
        """Whether calibration priced the top-k kernel (else a cost falls back to the roofline)."""
        return self.topk_elements_per_s is not None or self.topk_stream_factor > 0 or self.topk_select_element_s > 0

    def attention_s(self, heads: int, q_len: int, kept_tokens: int, head_dim: int, itemsize: float) -> float:
        """Fused attention over the kept heads and tokens: dot products at the calibrated rate, K/V
        gathered at the staircase read bandwidth, plus the softmax."""
        flops = 4.0 * heads * q_len * kept_tokens * head_dim
        kv_bytes = 2.0 * heads * kept_tokens * head_dim * itemsize
        scores = float(heads) * q_len * kept_tokens
        return (
            self.launch_s
            + _per(flops, self.attention_flops_per_s)
            + _per(kv_bytes, self.gather_bytes_per_s)
            + _per(scores, self.softmax_elements_per_s)
        )

    def skinny_gemm_s(self, rows: int, n: int, k: int, itemsize: float,
                      working_set_bytes: float | None = None) -> float:
        """``out[rows, n] = x[rows, k] @ w[n, k].T`` with few rows: the weights stream once while each
        weight row is reused from L1 by every row of x; dot products at the calibrated rate. One core
        does both in turn, so the two add.

        Where the staircase carries the kernel's own weight-streaming rate (measured with one row, its
        dot products included: from memory this kernel reaches about half a plain read's bandwidth, from
        cache nearly all of it, so no single fraction of the read rate fits both), the weights take that
        rate and only the rows past the first add dot products; else the read rate times
        ``skinny_read_fraction`` plus every row's dot products, after the launch.

        ``working_set_bytes``: what the weights compete with for the caches between two calls (alone:
        the weights; inside a decode step: every matrix and cache the step touches)."""
        weight = float(n) * k * itemsize
        ws = weight if working_set_bytes is None else max(weight, working_set_bytes)
        stream = weight / self.bandwidth(ws, write=False, weights=True)
        if self.weights_measured:
            dots = _per(2.0 * (rows - 1) * n * k, self.skinny_flops_per_s)
            return stream + max(dots, self._rows_pass_s(rows, n, k, itemsize))
        return self.launch_s + stream + _per(2.0 * rows * n * k, self.skinny_flops_per_s)

    def _rows_pass_s(self, rows: int, n: int, k: int, itemsize: float) -> float:
        """The skinny GEMM's passes over x: every weight row is multiplied by all of x, so x is read
        ``n`` times. While x fits where the weights rate peaks (L1/L2 here) the dot-product rate
        binds and this is 0. Past that, each pass streams x from the level it fits in while doing one
        dot product per 4 bytes: what the weights kind measures at x's size. (Measured here: with x
        of 4 MiB, 256 rows of 4096, the dot products ran at 10.3 GFLOP/s instead of 13.8.)"""
        x_bytes = float(rows) * k * itemsize
        plateau = self.weights_peak.working_set_bytes
        if rows < 2 or x_bytes <= plateau:
            return 0.0
        return n * x_bytes / self.bandwidth(x_bytes, write=False, weights=True)

    def dram_share(self, working_set_bytes: float) -> float:
        """Fraction of a computing stream's reads that DRAM serves at this working set (0 to 1).

        Read off the weights kind (a stream consumed by dot products, as attention's K and V are): 0 up
        to the step where it peaks, 1 at the largest step, and in between the share of the extra time
        per byte it pays over its peak, ``(1/bw - 1/peak) / (1/bw_dram - 1/peak)``. Such a stream meets
        the cache edge earlier than a plain read does (here: the weights rate falls to its DRAM value
        by 48 MiB, the read rate only past 96 MiB)."""
        peak = self.weights_peak
        if working_set_bytes <= peak.working_set_bytes:
            return 0.0
        fast, slow = 1.0 / (peak.weights_bytes_per_s or 1.0), 1.0 / (self.staircase[-1].weights_bytes_per_s or 1.0)
        if slow <= fast:
            return 1.0
        here = 1.0 / self.bandwidth(working_set_bytes, write=False, weights=True)
        return min(1.0, max(0.0, (here - fast) / (slow - fast)))

    def decode_attention_stream_s(self, lens: list[int], heads: int, head_dim: int, itemsize: float,
                                  working_set_bytes: float | None = None) -> float:
        """The part of decode attention that waits on memory (no launch, no arithmetic).

        With the weights kind measured: the DRAM transfer time of the K and V bytes DRAM serves
        (:meth:`dram_share`). Reads from the caches cost nothing extra: the prefetcher streams them
        while the core computes. Measured here on this kernel's two passes alone: the dot products
        over K took 0.158 ns/B at 1.8 and at 3.0 MB (in cache, compute-bound), 0.219 from DRAM; the
        weighted sum over V 0.035 and 0.106; both passes paid about the DRAM read time per byte
        (0.075 ns/B) on top of their in-cache time. Without the weights kind, every byte at the read
        bandwidth of the working set."""
        tokens = float(sum(n + 1 for n in lens))
        kv = 2.0 * heads * tokens * head_dim * itemsize
        ws = kv if working_set_bytes is None else max(kv, working_set_bytes)
        if self.weights_measured:
            return kv * self.dram_share(ws) / self.staircase[-1].read_bytes_per_s
        return kv / self.bandwidth(ws, write=False)

    def decode_attention_s(self, lens: list[int], heads: int, head_dim: int, itemsize: float,
                           working_set_bytes: float | None = None) -> float:
        """One new token per request attending over its ``len + 1`` cached tokens (K and V read once):
        the dot products at the calibrated rate plus the wait on memory."""
        tokens = float(sum(n + 1 for n in lens))
        return (
            self.launch_s
            + _per(4.0 * heads * tokens * head_dim, self.decode_attention_flops_per_s)
            + self.decode_attention_stream_s(lens, heads, head_dim, itemsize, working_set_bytes)
        )

    def decode_step_s(self, batch_lens: list[int], hidden: int, heads: int, ffn: int, itemsize: float) -> float:
        """One decode step of a GPT layer: QKV, attention, output projection, MLP (composed).

        A step runs its four weight matrices and the KV caches one after another, so a repeated step
        finds none of them in cache that the others evicted: each part streams at the bandwidth of the
        step's whole footprint, not of its own matrix (a 4 MiB matrix alone fits a large L2; inside a
        48 MiB step it comes from memory)."""
        b = len(batch_lens)
        d = hidden // heads
        footprint = (4.0 * hidden * hidden + 2.0 * hidden * ffn) * itemsize + 2.0 * heads * d * itemsize * sum(
            n + 1 for n in batch_lens)
        return (
            self.skinny_gemm_s(b, 3 * hidden, hidden, itemsize, footprint)
            + self.decode_attention_s(batch_lens, heads, d, itemsize, footprint)
            + self.skinny_gemm_s(b, hidden, hidden, itemsize, footprint)
            + self.skinny_gemm_s(b, ffn, hidden, itemsize, footprint)
            + self.skinny_gemm_s(b, hidden, ffn, itemsize, footprint)
            + self.elementwise_s(b * ffn, itemsize, 1, 1)
        )

    def grouped_gemm_s(self, counts: list[int], hidden: int, ffn: int, itemsize: float, dtype: str) -> float:
        """MoE expert FFNs, one expert after another: per expert with tokens, two GEMMs, the ReLU
        pass over the hidden activations and the copy of the result into the output rows. Each
        GEMM's operands and the copy's output rows come from the level the whole layer fits in (every
        active expert's weights and the activations), not from the cache a lone repeated kernel
        enjoys; the ReLU runs on activations its GEMM has just written. (Measured in the layer, 1024
        token-slots over 8 experts: the copy of 62 rows of 512 took 16 us, 6 us priced in cache.)"""
        active = [c for c in counts if c > 0]
        footprint = (len(active) * 2.0 * hidden * ffn + sum(active) * (2.0 * hidden + ffn)) * itemsize
        return sum(
            self.gemm_s(c, ffn, hidden, itemsize, dtype, footprint)
            + self.elementwise_s(c * ffn, itemsize, 1, 1)
            + self.gemm_s(c, hidden, ffn, itemsize, dtype, footprint)
            + self.copy_s(float(c) * hidden * itemsize, footprint)
            for c in counts
            if c > 0
        )

    def dispatch_stream_s(self, tokens: int, slots: int, hidden: int, itemsize: float) -> float:
        """The dispatch's rows: each slot's row read once and written once. A token's row is read once
        per expert it picked, from cache after the first, so the pass holds the token rows and the
        output rows, not every byte it moves: that is its working set."""
        nbytes = float(slots) * hidden * itemsize
        return self.stream_s(nbytes, nbytes, float(tokens + slots) * hidden * itemsize)

    def dispatch_s(self, tokens: int, slots: int, hidden: int, itemsize: float) -> float:
        """MoE dispatch (counting sort by expert) of ``tokens`` rows into ``slots`` (token, expert)
        rows: the rows' pass plus a calibrated per-slot cost (histogram, cursor, row-sized copy call)."""
        return self.launch_s + self.dispatch_stream_s(tokens, slots, hidden, itemsize) + slots * self.dispatch_slot_s


def gemm_pack_bytes(m: int, n: int, k: int, itemsize: float) -> float:
    """Bytes a BLAS GEMM packs into its panel layout per call: both operands, once each."""
    return float(k) * (m + n) * itemsize


def gemm_padded_flops(m: int, n: int, k: int, tile: tuple[int, int], units: int) -> float:
    """FLOPs a GEMM costs once its output is cut into tiles and the tiles into waves of ``units``."""
    tiles = math.ceil(m / tile[0]) * math.ceil(n / tile[1])
    return math.ceil(tiles / units) * units * 2.0 * tile[0] * tile[1] * k


def models_to_dict(models: OperatorModels) -> dict[str, object]:
    """Plain data (JSON/YAML), exactly as ``device.operators`` is written in a hardware file."""
    from hwsim.hardware import schema

    return schema.dump(models)


def models_from_dict(data: Mapping[str, object], where: str = "<models>") -> OperatorModels:
    """Inverse of :func:`models_to_dict`, checked by the hardware schema; a bad field is a CostError naming it."""
    from hwsim.hardware import schema

    try:
        models: OperatorModels = schema.parse(OperatorModels, dict(data), where, "operators")
    except HardwareError as exc:
        raise CostError(f"operator models: {exc}") from None
    return models


__all__ = [
    "GatherStep",
    "Interference",
    "MemoryStep",
    "OperatorModels",
    "concurrent_s",
    "derived_gpu_models",
    "gemm_pack_bytes",
    "gemm_padded_flops",
    "models_from_dict",
    "models_to_dict",
]


def shared_caches_s(models: OperatorModels, alone_s: float, memory: float, own_bytes: float,
                    other_bytes: float, *, write: bool = True) -> float:
    """A kernel's alone time once another kernel's data share the caches with its own: the memory-bound
    part of it (``memory``, 0..1) streams at the staircase's bandwidth for both working sets together.
    Measured here, c = a + b on each of two threads: 6 and 20 MiB each, 1.00-1.03x slower together
    (both fit the last-level cache); 48 MiB each, 1.07-1.15x (alone it partly fits, together not);
    100 MiB each, 1.00x (both stream from DRAM alone already, and two cores do not saturate it).
    Sharing DRAM bandwidth is :class:`Interference`'s part; sharing the caches is this one."""
    ratio = models.bandwidth(own_bytes, write=write) / models.bandwidth(own_bytes + other_bytes, write=write)
    return alone_s * (1.0 + _unit(memory) * (ratio - 1.0))


def concurrent_s(
    first_alone_s: float, second_alone_s: float, first_memory: float, second_memory: float, interference: Interference,
    dram: float = 1.0,
) -> tuple[float, float, float]:
    """(first done, second done, both done) when two kernels start together on separate units.

    While both run, each progresses at ``1 / slowdown`` of its alone rate (the slowdown set by what
    each is bound by, see :class:`Interference`; ``dram``: the share of their memory traffic DRAM
    serves); once one finishes the other runs alone. With no interference the pair takes ``max(a, b)``
    (perfect overlap); with slowdown 2 it approaches ``a + b`` (serial): real pairs land in between.
    """
    s1 = interference.slowdown(first_memory, second_memory, dram)
    s2 = interference.slowdown(second_memory, first_memory, dram)
    t1, t2 = first_alone_s * s1, second_alone_s * s2
    if t1 <= t2:
        done2 = t1 + (1.0 - t1 / t2) * second_alone_s
        return t1, done2, max(t1, done2)
    done1 = t2 + (1.0 - t2 / t1) * first_alone_s
    return done1, t2, max(done1, t2)


# --------------------------------------------------------------------------------------------------
# Operator models of a GPU that has not been calibrated, derived from its hardware file's datasheet
# numbers and the assumptions below (each to be replaced by `hwsim validate --device gpu`).

#: Fraction of the datasheet HBM bandwidth a streaming copy/triad reaches. Assumption: STREAM-style
#: kernels on H100-class GPUs typically reach ~90% of the datasheet figure.
GPU_STREAM_FRACTION = 0.9
#: L2 bandwidth as a multiple of HBM bandwidth for an L2-resident working set. Assumption (public
#: microbenchmarks of H100 report an L2 several times faster than HBM); only the mid-size steps use it.
GPU_L2_OVER_HBM = 2.0
#: Fraction of the streaming rate a GEMV / decode skinny GEMM reaches. Assumption: cuBLAS GEMV reads
#: the matrix once but does not reach a copy's rate; the issue's H100 measurements show ~25% slower.
GPU_GEMV_FRACTION = 0.8
#: Fraction of dense tensor-core peak a large cuBLAS GEMM reaches. Assumption (as the presets'
#: efficiency curve: ~75%).
GPU_GEMM_FRACTION = 0.75
#: Output tile of a cuBLAS GEMM CTA for the wave model. Assumption: 128 x 128 on Hopper.
GPU_GEMM_TILE = (128, 128)
#: Radix-select top-k (kernels/topk.py topk_cupy): one 256-thread block per row; a row's block
#: selects at this many elements per second (4 radix passes over fp32 values, mostly from L2).
#: Assumption, to be replaced by calibration.
GPU_TOPK_ROW_ELEMENTS_PER_S = 4e9
#: Resident 256-thread blocks per SM (2048 threads per SM on Hopper, whitepaper), so rows in flight.
GPU_TOPK_BLOCKS_PER_SM = 8
#: Two kernels on two streams: both memory-bound share HBM (each at half rate: slowdown 2, physics of a
#: saturated bus); two full-device GEMMs share the SMs (2); a GEMM next to a copy mostly overlaps.
#: The last is an assumption (T3, ASPLOS'24, measures contention of this kind; no number taken from it).
GPU_INTERFERENCE = Interference(memory_memory=2.0, compute_compute=2.0, compute_memory=1.25)


def derived_gpu_models(
    *, sms: int, hbm_bytes_per_s: float, l2_bytes: float, launch_s: float, peak_flops_per_s: Mapping[str, float]
) -> OperatorModels:
    """Per-family models of an uncalibrated GPU from datasheet numbers and the assumptions above."""
    hbm = hbm_bytes_per_s * GPU_STREAM_FRACTION
    l2 = hbm * GPU_L2_OVER_HBM
    steps = []
    for ws in (1 << 20, 8 << 20, l2_bytes * 0.5, l2_bytes * 4, 1 << 32):
        level = l2 if ws <= l2_bytes * 0.5 else hbm
        rate = ws / (launch_s + ws / level)  # per-call rate, launch included (see MemoryStep)
        steps.append(MemoryStep(float(ws), rate, rate, rate))
    steps.sort(key=lambda s: s.working_set_bytes)
    return OperatorModels(
        threads=sms,
        launch_s=launch_s,
        staircase=tuple(steps),
        gemm_flops_per_s={k: v * GPU_GEMM_FRACTION for k, v in peak_flops_per_s.items()},
        gemm_fixed_s=launch_s,
        gemm_tile_m=GPU_GEMM_TILE[0],
        gemm_tile_n=GPU_GEMM_TILE[1],
        gemv_read_fraction=GPU_GEMV_FRACTION,
        topk_elements_per_s=GPU_TOPK_ROW_ELEMENTS_PER_S,
        topk_row_s=0.0,
        topk_parallel_rows=sms * GPU_TOPK_BLOCKS_PER_SM,
        interference=GPU_INTERFERENCE,
    )
