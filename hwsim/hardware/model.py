"""Hardware as frozen data: devices, memories, links and topologies.

Everything here is a plain value: no behaviour beyond derived quantities and routing, so that a
sweep can build variants with :func:`dataclasses.replace` and two equal descriptions compare equal.
Units are SI base units and are spelled in the field names.

Each field is declared once, with its YAML key, unit, range and help as :func:`~hwsim.hardware.schema.spec`
metadata; the loader, dumper, ``hwsim hw show``, sweep overrides and the JSON Schema all derive from it
(see :mod:`hwsim.hardware.schema`). Adding a field is adding it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hwsim.costs.families import OperatorModels
from hwsim.errors import HardwareError
from hwsim.hardware.schema import ANY_UNIT, spec

TopologyKind = Literal["single", "ring", "switch", "two-level"]
DeviceKind = Literal["gpu", "cpu", "accelerator"]


@dataclass(frozen=True)
class Efficiency:
    """Fraction of peak an operation reaches, as a saturating curve of its size.

    ``fraction(x) = max_fraction * x / (x + half_x)``: tiny operations cannot fill the machine,
    large ones approach ``max_fraction``. Calibration fits the four numbers from microbenchmarks.
    """

    compute_max: float = spec("compute_max", "largest fraction of peak FLOP/s a big operation reaches",
                              exclusive_minimum=0, maximum=1, default=1.0)
    compute_half_flops: float = spec("compute_half", "operation size reaching half of compute_max", unit="flop",
                                     minimum=0, default=0.0)
    memory_max: float = spec("memory_max", "largest fraction of memory bandwidth a big transfer reaches",
                             exclusive_minimum=0, maximum=1, default=1.0)
    memory_half_bytes: float = spec("memory_half", "transfer size reaching half of memory_max", unit="bytes",
                                    minimum=0, default=0.0)

    def compute(self, flops: float) -> float:
        return self.compute_max * _saturate(flops, self.compute_half_flops)

    def memory(self, nbytes: float) -> float:
        return self.memory_max * _saturate(nbytes, self.memory_half_bytes)


def _saturate(x: float, half: float) -> float:
    if half <= 0.0:
        return 1.0
    if x <= 0.0:
        return 0.0
    return x / (x + half)


@dataclass(frozen=True)
class Memory:
    """Off-chip memory: capacity, aggregate bandwidth and how it is split into channels."""

    capacity_bytes: float = spec("capacity", "off-chip memory capacity", unit="bytes", exclusive_minimum=0)
    bandwidth_bytes_per_s: float = spec("bandwidth", "aggregate off-chip memory bandwidth", unit="bytes_per_s",
                                        exclusive_minimum=0)
    channels: int = spec("channels", "independent memory channels (e.g. HBM stacks)", minimum=1, default=1)
    transaction_bytes: int = spec("transaction", "smallest memory access", unit="bytes", exclusive_minimum=0,
                                  default=64)

    @property
    def channel_bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s / self.channels


@dataclass(frozen=True)
class Engine:
    """A special-purpose unit on a device (a top-k engine, a DMA engine, near-memory adders).

    ``params`` holds its numbers in base units, keyed by the names its system model reads.
    """

    name: str = spec(None, "the engine's name: its key under device.engines", role="name")
    units: int = spec("units", "how many of this engine a device has", minimum=1, default=1)
    params: Mapping[str, float] = spec(None, "an engine parameter its system model reads", unit=ANY_UNIT, minimum=0,
                                       default_factory=dict, extra_keys=True)

    def param(self, key: str) -> float:
        try:
            return self.params[key]
        except KeyError:
            raise HardwareError(
                f"engine {self.name!r} has no parameter {key!r}; it has {sorted(self.params)}") from None


@dataclass(frozen=True)
class Device:
    """One processor: its compute, its memory and its fixed per-operation cost."""

    name: str = spec(None, "the hardware's name", role="name")
    kind: DeviceKind = spec("kind", "kind of processor")
    compute_units: int = spec("compute_units", "SMs, cores or processing elements", minimum=1)
    clock_hz: float = spec("clock", "clock frequency", unit="hz", exclusive_minimum=0)
    peak_flops_per_s: Mapping[str, float] = spec("peak", "dense peak rate for this dtype", unit="flop_per_s",
                                                 exclusive_minimum=0, non_empty=True)
    memory: Memory = spec("memory", "off-chip memory")
    sram_bytes: float = spec("sram", "on-chip SRAM (last-level cache) capacity", unit="bytes", minimum=0)
    launch_overhead_s: float = spec("launch_overhead", "fixed cost of one operation (launch and sync)", unit="s",
                                    minimum=0)
    efficiency: Efficiency = spec("efficiency", "fraction of peak reached, by operation size", default=Efficiency())
    engines: Mapping[str, Engine] = spec("engines", "special-purpose units, by name", default_factory=dict)
    sram_bandwidth_bytes_per_s: float | None = spec(
        "sram_bandwidth", "bandwidth of operations whose bytes fit in sram (warm on-chip data); unset: always off-chip",
        unit="bytes_per_s", exclusive_minimum=0, default=None)
    operators: OperatorModels | None = spec(
        "operators", "per-family operator models measured by `hwsim hw calibrate` (memory staircase, GEMM, GEMV, "
        "top-k, attention, decode, MoE, interference); unset: the roofline (CPU) or datasheet-derived models (GPU)",
        default=None)

    def peak(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``; unknown dtypes are an error, never a silent default."""
        try:
            return self.peak_flops_per_s[dtype]
        except KeyError:
            raise HardwareError(
                f"device {self.name!r} has no peak rate for dtype {dtype!r}; it has {sorted(self.peak_flops_per_s)}"
            ) from None

    def engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise HardwareError(f"device {self.name!r} has no engine {name!r}; it has {sorted(self.engines)}") from None


@dataclass(frozen=True)
class Link:
    """A one-directional channel: bytes per second and a fixed latency per message."""

    bandwidth_bytes_per_s: float = spec("bandwidth", "bandwidth of the link, each way", unit="bytes_per_s",
                                        exclusive_minimum=0)
    latency_s: float = spec("latency", "fixed latency of one message", unit="s", minimum=0, default=0.0)

    def time_s(self, nbytes: float) -> float:
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s


LinkId = tuple[str, int, int]
"""A directed link: (kind, from, to). Kinds: 'ring', 'up'/'down' (switch ports), 'nic-out'/'nic-in'."""


@dataclass(frozen=True)
class Topology:
    """How devices connect.

    * ``single``: one device, no links.
    * ``ring``: device i has a link to i+1 and to i-1 (bidirectional ring); messages take the shorter way.
    * ``switch``: every device has one egress and one ingress port on a non-blocking switch.
    * ``two-level``: ``nodes`` nodes of ``devices // nodes`` devices; a switch inside each node, and
      each device has its own network port (``inter_link``) to the other nodes.
    """

    kind: TopologyKind = spec("kind", "how devices connect", default="single")
    devices: int = spec("devices", "number of devices", minimum=1, default=1)
    link: Link | None = spec("link", "the link between devices (inside a node for two-level)", default=None)
    nodes: int = spec("nodes", "number of nodes (two-level)", minimum=1, default=1)
    inter_link: Link | None = spec("inter_link", "each device's network port to other nodes (two-level)", default=None)

    def schema_problems(self) -> list[tuple[str, str]]:
        """Rules across fields, as (YAML key, message); the loader and sweep overrides both apply them."""
        problems = []
        if self.kind != "single" and self.link is None:
            problems.append(("link", f"missing (a {self.kind} topology needs its link bandwidth)"))
        if self.kind == "two-level":
            if self.inter_link is None:
                problems.append(("inter_link", "missing (a two-level topology needs its inter-node link)"))
            if self.devices % self.nodes:
                problems.append(("nodes", f"value {self.nodes} does not divide devices={self.devices}"))
        return problems

    @property
    def devices_per_node(self) -> int:
        return self.devices // self.nodes

    def node_of(self, device: int) -> int:
        return device // self.devices_per_node

    def route(self, src: int, dst: int) -> tuple[LinkId, ...]:
        """The directed links a message from ``src`` to ``dst`` crosses, in order."""
        for d in (src, dst):
            if not 0 <= d < self.devices:
                raise HardwareError(f"device index {d} out of range for a {self.devices}-device {self.kind} topology")
        if src == dst:
            return ()
        if self.kind == "ring":
            n = self.devices
            forward = (dst - src) % n
            step = 1 if forward <= n - forward else -1
            hops, here = [], src
            while here != dst:
                nxt = (here + step) % n
                hops.append(("ring", here, nxt))
                here = nxt
            return tuple(hops)
        if self.kind == "switch" or (self.kind == "two-level" and self.node_of(src) == self.node_of(dst)):
            return (("up", src, -1), ("down", -1, dst))
        if self.kind == "two-level":
            return (("nic-out", src, -1), ("nic-in", -1, dst))
        raise HardwareError(f"a {self.kind!r} topology has no links between devices")

    def link_for(self, link_id: LinkId) -> Link:
        """The bandwidth and latency of one directed link."""
        kind = link_id[0]
        chosen = self.inter_link if kind in ("nic-out", "nic-in") else self.link
        if chosen is None:
            raise HardwareError(f"topology {self.kind!r} defines no link for {kind!r}")
        return chosen

    def link_ids(self) -> tuple[LinkId, ...]:
        """Every directed link of the topology."""
        n = self.devices
        if self.kind == "ring":
            if n == 2:
                return (("ring", 0, 1), ("ring", 1, 0))
            return tuple(("ring", i, (i + s) % n) for i in range(n) for s in (1, -1))
        ports: list[LinkId] = []
        if self.kind in ("switch", "two-level"):
            ports += [("up", i, -1) for i in range(n)] + [("down", -1, i) for i in range(n)]
        if self.kind == "two-level":
            ports += [("nic-out", i, -1) for i in range(n)] + [("nic-in", -1, i) for i in range(n)]
        return tuple(ports)


@dataclass(frozen=True)
class Hardware:
    """A named system: one device type replicated over a topology."""

    name: str = spec("name", "name of the hardware (how hwsim finds it)")
    description: str = spec("description", "one line saying what this is", yaml_default="")
    device: Device = spec("device", "the processor, replicated over the topology")
    topology: Topology = spec("topology", "how the devices connect", default=Topology())
    source: str = spec(None, "file the description was read from", role="source", default="<memory>")
