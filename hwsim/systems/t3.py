"""T3 (Pati et al., ASPLOS'24): a tensor-parallel GEMM overlapped with its ring reduce-scatter.

One GPU of an N-GPU ring runs a sublayer's GEMM, whose partial-sum output is reduce-scattered around
the ring and then all-gathered. The ring is homogeneous, so every GPU does the same thing at the same
time: we simulate GPU 0 and take what arrives from its predecessor to be the mirror image of what it
sends to its successor (same bytes, same moment). Resources of that GPU:

* ``compute``: its compute units. A GEMM runs as waves of output tiles, one tile per unit per wave,
  so a wave takes one tile's compute time however few tiles it has (wave quantization). A software
  collective kernel holds some units and the GEMM waves get ``units - taken``.
* ``hbm``: one :class:`~hwsim.engine.SharedBandwidth` that every GEMM wave and every collective step
  draws on. Each activity's HBM flow is paced at its natural rate (bytes over its compute or link
  time), so it slows only when the summed demand exceeds the capacity. MCA swaps the allocator.
* ``link``: the outgoing ring link; each message also pays the link latency.

Strategies are switches on one model (:class:`Strategy`): ``overlap`` none / software / t3, the CUs a
software collective takes, near-memory reduction (``nmc``) and memory-controller arbitration (``mca``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generator, Literal, Sequence

import numpy as np
import simpy

from hwsim.costs import itemsize
from hwsim.engine import Flow, SharedBandwidth, Simulation, max_min_fair
from hwsim.engine.bandwidth import Allocator
from hwsim.errors import SimulationError
from hwsim.hardware import Hardware
from hwsim.workloads.tensor_parallel import TPGemm

Overlap = Literal["none", "software", "t3"]
GEMM_LABEL = "gemm"
"""HBM flows whose label starts with this are the GEMM's: MCA gives them priority."""


class T3Error(SimulationError):
    """A strategy or parameter the T3 model cannot run (e.g. a collective taking every CU)."""


@dataclass(frozen=True)
class MCAConfig:
    """Memory-controller arbitration: GEMM first, collective admitted below an occupancy threshold.

    While the GEMM's HBM demand is below ``occupancy_threshold`` of the capacity, the collective gets
    everything the GEMM leaves; above it the collective is held back to ``starvation_share`` of the
    capacity, the fluid form of the arbiter's starvation bound (a stalled request is served after a
    bounded wait). ASSUMPTION: T3 does not publish numbers we could check; 0.9 and 0.05 are ours.
    """

    occupancy_threshold: float = 0.9
    starvation_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.occupancy_threshold <= 1.0:
            raise T3Error(f"MCA occupancy_threshold must be in (0, 1], got {self.occupancy_threshold!r}")
        if not 0.0 < self.starvation_share < 1.0:
            raise T3Error(f"MCA starvation_share must be in (0, 1), got {self.starvation_share!r}")


def mca_allocator(config: MCAConfig = MCAConfig()) -> Allocator:
    """An engine allocator that gives flows labelled ``gemm...`` priority over all others."""

    def allocate(capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
        gemm = [f for f in flows if f.label.startswith(GEMM_LABEL)]
        other = [f for f in flows if not f.label.startswith(GEMM_LABEL)]
        if not gemm or not other:
            max_min_fair(capacity_bytes_per_s, flows)
            return
        floor = config.starvation_share * capacity_bytes_per_s
        max_min_fair(capacity_bytes_per_s - floor, gemm)
        used = sum(f.rate_bytes_per_s for f in gemm)
        if used <= config.occupancy_threshold * capacity_bytes_per_s:
            max_min_fair(capacity_bytes_per_s - used, other)
        else:
            max_min_fair(floor, other)

    return allocate


@dataclass(frozen=True)
class Strategy:
    """How the sublayer runs. Switches combine freely (e.g. software overlap with MCA, T3 without NMC)."""

    name: str
    overlap: Overlap = "none"
    collective_cus: int = 0
    nmc: bool = False
    mca: bool = False

    def __post_init__(self) -> None:
        if self.overlap not in ("none", "software", "t3"):
            raise T3Error(f"strategy {self.name!r}: overlap must be none, software or t3, got {self.overlap!r}")
        if self.collective_cus < 0:
            raise T3Error(f"strategy {self.name!r}: collective_cus must be >= 0, got {self.collective_cus!r}")
        if self.overlap == "t3" and self.collective_cus:
            raise T3Error(f"strategy {self.name!r}: T3's collective runs on DMA engines and takes no CUs")
        if self.nmc and self.overlap != "t3":
            raise T3Error(f"strategy {self.name!r}: near-memory reduction needs T3's tracked DMA updates")


# ASSUMPTION: the software collective's CU count is not given by T3; RCCL/NCCL ring kernels use one
# block (one CU) per channel and commonly 8-16 channels. We take 16 of 80 CUs; the suite sweeps it.
SOFTWARE_COLLECTIVE_CUS = 16

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("sequential"),
        Strategy("software", overlap="software", collective_cus=SOFTWARE_COLLECTIVE_CUS),
        Strategy("t3-track", overlap="t3"),
        Strategy("t3", overlap="t3", nmc=True),            # the paper's "T3" (track & trigger + NMC)
        Strategy("t3-mca", overlap="t3", nmc=True, mca=True),  # the paper's "T3-MCA"
    )
}


@dataclass(frozen=True)
class T3Params:
    """Modelling knobs that are not hardware: GEMM tile shape, MCA numbers, and contention on/off.

    ``contention=False`` gives the GEMM and the collective a private HBM each at full bandwidth (CUs
    a software collective takes are the strategy's ``collective_cus``: set 0 for no CU contention).
    ASSUMPTION: 128x128 output tiles (a common fp16 macro-tile in rocBLAS/CUTLASS); a wave's tiles are
    rasterised as a near-square block (grouped ordering) and L2 keeps a wave's A and B panels but
    nothing across waves, so a wave reads each distinct A row-panel and B column-panel once.
    """

    tile_m: int = 128
    tile_n: int = 128
    mca: MCAConfig = MCAConfig()
    contention: bool = True


@dataclass(frozen=True)
class Wave:
    """One wave of tiles: its compute time, HBM reads, C writes, and the stages it completes."""

    tiles: int
    compute_s: float
    read_bytes: float
    write_bytes: float
    first_stage_write_bytes: float = 0.0
    completes: tuple[int, ...] = ()


@dataclass(frozen=True)
class SublayerResult:
    """One strategy on one sublayer: time, where it went, and bytes moved by one GPU."""

    strategy: str
    time_s: float
    gemm_s: float
    reduce_scatter_end_s: float
    all_gather_s: float
    hbm_bytes: float
    link_bytes: float
    gemm_waves: int
    extras: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- GEMM waves


def wave_count(tiles: int, units: int, taken: int = 0) -> int:
    """Waves a GEMM of ``tiles`` tiles needs when a collective holds ``taken`` of ``units`` CUs."""
    free = units - taken
    if free < 1:
        raise T3Error(f"a collective taking {taken} of {units} CUs leaves none for the GEMM")
    return -(-tiles // free)


def _group_rows(units: int, tile_rows: int, tile_cols: int) -> int:
    """Tile-rows per raster group: a near-square block of ``units`` tiles, within the grid."""
    return max(1, min(tile_rows, round(math.sqrt(units)), units))


@lru_cache(maxsize=4096)
def gemm_waves(row_blocks: tuple[int, ...], n: int, k: int, units: int, elem_bytes: float, tile_m: int,
               tile_n: int, tile_s: float) -> tuple[Wave, ...]:
    """The waves of one GEMM kernel ``C[m,n] = A[m,k] B[k,n]`` on ``units`` CUs, each ``tile_s`` long.

    ``row_blocks`` splits C's rows into stages visited in that order (T3's staggered GEMM: the same
    kernel, its tiles reordered so chunks finish in ring order; a plain GEMM has one block). Inside a
    stage, tiles go in grouped order (``g`` tile-rows at a time, column by column); wave ``w`` takes
    the next ``units`` tiles, so a wave may finish one stage and start the next. Its HBM reads are the
    distinct A row-panels and B column-panels it touches (clipped at the matrix edge); its writes are
    its C tiles.
    """
    heights: list[float] = []
    stage_of_row: list[int] = []
    order_r: list[np.ndarray] = []
    order_c: list[np.ndarray] = []
    tc = -(-n // tile_n)
    col_w = np.minimum(tile_n, n - np.arange(tc) * tile_n).astype(float)
    for stage, m in enumerate(row_blocks):
        tr = -(-m // tile_m)
        first = len(heights)
        heights += list(np.minimum(tile_m, m - np.arange(tr) * tile_m).astype(float))
        stage_of_row += [stage] * tr
        g = _group_rows(units, tr, tc)
        for r0 in range(0, tr, g):
            h = min(g, tr - r0)
            order_r.append(first + np.tile(np.arange(r0, r0 + h), tc))
            order_c.append(np.repeat(np.arange(tc), h))
    rows_all, cols_all = np.concatenate(order_r), np.concatenate(order_c)
    row_h, stages = np.asarray(heights), np.asarray(stage_of_row)
    last_tile = {int(st): int(np.nonzero(stages[rows_all] == st)[0][-1]) for st in np.unique(stages)}
    waves = []
    for start in range(0, len(rows_all), units):
        r, c = rows_all[start:start + units], cols_all[start:start + units]
        reads = (row_h[np.unique(r)].sum() + col_w[np.unique(c)].sum()) * k * elem_bytes
        areas = row_h[r] * col_w[c] * elem_bytes
        first_stage = float(areas[stages[r] == 0].sum())
        done = tuple(st for st, t in last_tile.items() if start <= t < start + units)
        waves.append(Wave(len(r), tile_s, float(reads), float(areas.sum()), first_stage, done))
    return tuple(waves)


# ----------------------------------------------------------------------------------- the model


class _GPU:
    """GPU 0's resources in one simulation, with byte counters."""

    def __init__(self, sim: Simulation, hw: Hardware, devices: int, strategy: Strategy, params: T3Params, tag: str):
        d = hw.device
        self.sim, self.env, self.params, self.strategy = sim, sim.env, params, strategy
        self.devices = devices
        hbm_bw = d.memory.bandwidth_bytes_per_s * d.efficiency.memory_max
        allocator = mca_allocator(params.mca) if strategy.mca else max_min_fair
        self.hbm = sim.bandwidth(hbm_bw, f"{tag}/hbm", allocator)
        # without contention the collective gets its own HBM: nothing it does can slow the GEMM
        self.hbm_coll = self.hbm if params.contention else sim.bandwidth(hbm_bw, f"{tag}/hbm-collective")
        link = hw.topology.link
        if link is None:
            raise T3Error(f"hardware {hw.name!r} has no link to build a ring from")
        self.link_latency_s = link.latency_s
        self.link_bw = link.bandwidth_bytes_per_s
        self.link: SharedBandwidth | None = (
            sim.bandwidth(self.link_bw, f"{tag}/link") if math.isfinite(self.link_bw) else None)
        self.units = d.compute_units
        self.compute = sim.compute(self.units, f"{tag}/compute")
        self.tile_s = 0.0
        self.link_bytes = 0.0

    # flows: a transfer paced over ``natural_s`` (its natural duration); zero bytes is instant
    def hbm_flow(self, nbytes: float, natural_s: float, label: str, collective: bool) -> simpy.Event:
        res = self.hbm_coll if collective else self.hbm
        cap = nbytes / natural_s if natural_s > 0 else None
        return res.transfer(nbytes, cap_bytes_per_s=cap, label=label)

    def link_send(self, nbytes: float, label: str) -> Generator[simpy.events.Event, object, None]:
        self.link_bytes += nbytes
        if self.link is not None and nbytes > 0:
            yield self.link.transfer(nbytes, label=label)
        if self.link_latency_s > 0:
            yield self.env.timeout(self.link_latency_s)

    def link_time_s(self, nbytes: float) -> float:
        return nbytes / self.link_bw if math.isfinite(self.link_bw) else 0.0

    @property
    def hbm_bytes(self) -> float:
        total = self.hbm.bytes_moved
        if self.hbm_coll is not self.hbm:
            total += self.hbm_coll.bytes_moved
        return total


def _tile_s(hw: Hardware, gemm: TPGemm, params: T3Params) -> float:
    d = hw.device
    per_cu = d.peak(gemm.dtype) * d.efficiency.compute_max / d.compute_units
    return 2.0 * params.tile_m * params.tile_n * gemm.k / per_cu


def _stage_rows(m: int, stages: int) -> list[int]:
    base, extra = divmod(m, stages)
    return [base + (1 if i < extra else 0) for i in range(stages)]


def _run_gemm(gpu: _GPU, row_blocks: tuple[int, ...], gemm: TPGemm, units: int, label: str,
              stage_done: Sequence[simpy.Event] = (), remote_first_stage: bool = False,
              ) -> Generator[simpy.events.Event, object, int]:
    """Run one GEMM kernel wave by wave, firing ``stage_done[s]`` when stage ``s``'s last tile is written.

    ``remote_first_stage``: T3's first stage stores its output straight into the successor's memory,
    so those C tiles cross the link instead of local HBM and (mirror image) the predecessor's stage-0
    output lands in this GPU's HBM at the same pace. Returns the number of waves.
    """
    p = gpu.params
    waves = gemm_waves(row_blocks, gemm.n, gemm.k, units, itemsize(gemm.dtype), p.tile_m, p.tile_n, gpu.tile_s)
    for i, w in enumerate(waves):
        events = [gpu.compute.run(w.tiles, w.compute_s, f"{label} wave {i}")]
        remote = w.first_stage_write_bytes if remote_first_stage else 0.0
        events.append(gpu.hbm_flow(w.read_bytes + w.write_bytes - remote, w.compute_s, f"{GEMM_LABEL}:{label}", collective=False))
        if remote:
            events.append(gpu.env.process(gpu.link_send(remote, f"{label} remote store")))
            events.append(gpu.hbm_flow(remote, w.compute_s, f"{label} incoming store", collective=True))
        yield gpu.env.all_of(events)
        for st in w.completes:
            if st < len(stage_done):
                stage_done[st].succeed()
    return len(waves)


def _ring_step(gpu: _GPU, chunk: float, hbm_bytes: float, label: str) -> Generator[simpy.events.Event, object, None]:
    """One ring step: send ``chunk`` over the link while its HBM traffic streams at the link's pace."""
    hbm = gpu.hbm_flow(hbm_bytes, gpu.link_time_s(chunk), label, collective=True)
    yield gpu.env.process(gpu.link_send(chunk, label))
    yield hbm


# HBM chunks per ring step for a GPU that reduces in its cores (read what is sent, write what is
# received, read both partials, write the sum), and for an all-gather step (read sent, write received).
RS_STEP_CHUNKS = 5.0
AG_STEP_CHUNKS = 2.0


def simulate_sublayer(hw: Hardware, gemm: TPGemm, strategy: Strategy, params: T3Params = T3Params(),
                      sim: Simulation | None = None, tag: str = "gpu0") -> SublayerResult:
    """Time and bytes of one GPU running ``gemm`` then reduce-scatter then all-gather on a ring of ``gemm.tp``."""
    n_dev = gemm.tp
    if n_dev < 2:
        raise T3Error(f"a tensor-parallel ring needs at least 2 GPUs, got tp={n_dev}")
    taken = strategy.collective_cus if strategy.overlap == "software" else 0
    if taken >= hw.device.compute_units:
        raise T3Error(f"strategy {strategy.name!r} takes {taken} CUs of {hw.device.compute_units}: none left for the GEMM")
    sim = sim if sim is not None else Simulation()
    gpu = _GPU(sim, hw, n_dev, strategy, params, tag)
    gpu.tile_s = _tile_s(hw, gemm, params)
    env = sim.env
    elem = itemsize(gemm.dtype)
    rows = _stage_rows(gemm.m, n_dev)
    chunks = [r * gemm.n * elem for r in rows]
    marks: dict[str, float] = {}
    waves_run = [0]

    def sequential() -> Generator[simpy.events.Event, object, None]:
        waves_run[0] = yield env.process(_run_gemm(gpu, (gemm.m,), gemm, gpu.units, f"{tag} gemm"))
        marks["gemm"] = env.now
        for s in range(n_dev - 1):
            c = chunks[s]
            yield env.process(_ring_step(gpu, c, RS_STEP_CHUNKS * c, f"{tag} reduce-scatter step {s}"))
        marks["rs"] = env.now

    def software() -> Generator[simpy.events.Event, object, None]:
        if taken:
            yield gpu.compute.acquire(taken)  # the persistent collective kernel holds its CUs
        stage_done = [env.event() for _ in range(n_dev)]
        reduced = [env.event() for _ in range(n_dev)]

        def gemm_stages() -> Generator[simpy.events.Event, object, None]:
            for s in range(n_dev):
                # software fine-grained overlap: one GEMM kernel per chunk, each quantized on its own
                waves_run[0] += yield env.process(
                    _run_gemm(gpu, (rows[s],), gemm, gpu.units - taken, f"{tag} gemm stage {s}", (stage_done[s],)))
            marks["gemm"] = env.now

        def collective() -> Generator[simpy.events.Event, object, None]:
            yield stage_done[0]
            reduced[0].succeed()
            for s in range(n_dev - 1):
                yield reduced[s]
                c = chunks[s]
                # send: read the chunk, and (mirror) write the chunk that arrives
                yield env.process(_ring_step(gpu, c, 2.0 * c, f"{tag} reduce-scatter send {s}"))
                yield stage_done[s + 1]
                # reduce kernel on the collective's CUs: read both partials, write the sum (memory-bound)
                yield gpu.hbm_flow(3.0 * chunks[s + 1], 0.0, f"{tag} reduce {s + 1}", collective=True)
                reduced[s + 1].succeed()
            marks["rs"] = env.now
            if taken:
                yield gpu.compute.release(taken)

        yield env.all_of([env.process(gemm_stages()), env.process(collective())])

    def t3() -> Generator[simpy.events.Event, object, None]:
        stage_done = [env.event() for _ in range(n_dev)]
        arrived = [env.event() for _ in range(n_dev)]  # arrived[s]: the predecessor's chunk for stage s+1

        def gemm_stages() -> Generator[simpy.events.Event, object, None]:
            # one unchanged GEMM kernel whose tiles are reordered so the chunks finish in ring order
            waves_run[0] = yield env.process(
                _run_gemm(gpu, tuple(rows), gemm, gpu.units, f"{tag} gemm", stage_done, remote_first_stage=True))
            marks["gemm"] = env.now

        def first_stage_arrival() -> Generator[simpy.events.Event, object, None]:
            yield stage_done[0]
            arrived[0].succeed()  # the predecessor's stage-0 stores landed during our stage 0

        def tracker() -> Generator[simpy.events.Event, object, None]:
            # stage s in 1..N-2: when the GEMM's writes and the incoming update are both counted,
            # trigger the DMA: read the reduced chunk (NMC) or both partials (added in the DMA engine)
            for s in range(1, n_dev - 1):
                yield env.all_of([stage_done[s], arrived[s - 1]])
                c = chunks[s]
                reads = c if strategy.nmc else 2.0 * c
                # the mirror incoming update is one write (in-memory add with NMC, a plain write without)
                yield env.process(_ring_step(gpu, c, reads + c, f"{tag} dma {s}"))
                arrived[s].succeed()
            yield env.all_of([stage_done[n_dev - 1], arrived[n_dev - 2]])
            if not strategy.nmc:  # the last chunk stays local: add it to what arrived, in the DMA engine
                yield gpu.hbm_flow(3.0 * chunks[n_dev - 1], 0.0, f"{tag} final reduce", collective=True)
            marks["rs"] = env.now

        yield env.all_of([env.process(gemm_stages()), env.process(first_stage_arrival()), env.process(tracker())])

    def run() -> Generator[simpy.events.Event, object, None]:
        body = {"none": sequential, "software": software, "t3": t3}[strategy.overlap]
        yield env.process(body())
        start_ag = env.now
        for s in range(n_dev - 1):
            c = chunks[(s + 1) % n_dev]
            yield env.process(_ring_step(gpu, c, AG_STEP_CHUNKS * c, f"{tag} all-gather step {s}"))
        marks["ag"] = env.now - start_ag

    sim.process(run())
    end = sim.run()
    return SublayerResult(
        strategy=strategy.name,
        time_s=end,
        gemm_s=marks["gemm"],
        reduce_scatter_end_s=marks["rs"],
        all_gather_s=marks["ag"],
        hbm_bytes=gpu.hbm_bytes,
        link_bytes=gpu.link_bytes,
        gemm_waves=waves_run[0],
    )


def ideal_overlap(sequential: SublayerResult) -> float:
    """The bound: GEMM and reduce-scatter perfectly overlapped (each at its uncontended time), then the all-gather."""
    rs_s = sequential.reduce_scatter_end_s - sequential.gemm_s
    return max(sequential.gemm_s, rs_s) + sequential.all_gather_s


def ring_hardware(hw: Hardware, devices: int) -> Hardware:
    """``hw`` as a ring of ``devices`` with its own link numbers (an NVSwitch box used as a ring)."""
    from dataclasses import replace

    link = hw.topology.link
    if link is None:
        raise T3Error(f"hardware {hw.name!r} has no link to build a ring from")
    return replace(hw, topology=replace(hw.topology, kind="ring", devices=devices, nodes=1))


__all__ = [
    "GEMM_LABEL", "MCAConfig", "STRATEGIES", "SOFTWARE_COLLECTIVE_CUS", "Strategy", "SublayerResult",
    "T3Error", "T3Params", "Wave", "gemm_waves", "ideal_overlap", "mca_allocator", "ring_hardware",
    "simulate_sublayer", "wave_count",
]
