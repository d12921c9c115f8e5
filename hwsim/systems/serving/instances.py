"""Concurrent model instances, as NVIDIA FasterTransformer runs them (Flover's "concurrent instances" baseline).

Each instance serves one request at a time at batch 1: it prefills, then decodes one token per
iteration. Instances run at once on the same device group, so they contend for its HBM and compute.

``shared_weights=False`` (the default, what FasterTransformer does): every instance loads its own copy
of the weights and preallocates one slot of ``max_seq_tokens`` for its KV cache, so the number of
instances is what fits in device memory (two to six for the paper's models on an 80 GB A100).
``shared_weights=True`` keeps one copy of the weights for all instances (limited only by KV slots):
a what-if, not what the paper's baseline ran, kept to show how much the baseline's choice matters.

Contention is iteration by iteration: each decode iteration (or a chunk of ``iterations_per_flow``
iterations, a coarsening for long traces) is one flow of its bytes on the engine's shared HBM
(:class:`hwsim.engine.SharedBandwidth`, max-min fair), capped at the rate the iteration reaches alone;
a prefill is one flow of its FLOPs on the shared compute, capped the same way. A lone instance thus
takes exactly the sum of its iterations, and concurrent ones slow each other down by fair sharing
whenever their summed demand exceeds the device's rate.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from hwsim.errors import WorkloadError
from hwsim.systems.serving.run import Scheduler, ServingRun
from hwsim.workloads.serving import Request

__all__ = ["ConcurrentInstances", "instance_count"]


def instance_count(run: ServingRun, shared_weights: bool) -> tuple[int, float]:
    """(instances that fit, bytes they take beyond the first weight copy)."""
    cost = run.cost
    if shared_weights:
        count = cost.slots()
        return count, count * cost.slot_bytes
    per_instance = cost.weight_bytes + cost.slot_bytes
    count = int(cost.device.memory.capacity_bytes // per_instance)
    if run.config.max_slots is not None:
        count = min(count, run.config.max_slots)
    if count < 1:
        raise WorkloadError(f"not one instance of {run.config.model.name} with a {run.config.max_seq_tokens}-token "
                            f"slot fits in {cost.device.name}'s memory")
    return count, (count - 1) * cost.weight_bytes + count * cost.slot_bytes


class ConcurrentInstances(Scheduler):
    """Requests wait in arrival order for a free instance; instances contend per iteration."""

    def __init__(self, shared_weights: bool = False, iterations_per_flow: int = 1):
        if iterations_per_flow < 1:
            raise WorkloadError(f"iterations_per_flow must be >= 1, got {iterations_per_flow}")
        self.shared_weights = shared_weights
        self.iterations_per_flow = iterations_per_flow
        self.name = "concurrent-shared" if shared_weights else "concurrent"

    def simulate(self, run: ServingRun) -> Generator[simpy.events.Event, object, None]:
        cost, env = run.cost, run.env
        dev = cost.device
        eff = dev.efficiency
        hbm = run.sim.bandwidth(dev.memory.bandwidth_bytes_per_s * eff.memory_max, "hbm")
        flops = run.sim.bandwidth(dev.peak(cost.dtype) * eff.compute_max, "compute")
        count, nbytes = instance_count(run, self.shared_weights)
        run.instances = count
        run.reserve(nbytes)
        pool = simpy.Container(env, capacity=count, init=count)
        chunk = self.iterations_per_flow

        def instance(req: Request) -> Generator[simpy.events.Event, object, None]:
            yield env.timeout(req.arrival_s - env.now)
            yield pool.get(1)
            start = env.now
            pre_s, pre_flops = cost.prefill([req.prompt_tokens])
            yield flops.transfer(pre_flops, cap_bytes_per_s=pre_flops / pre_s, label=f"prefill {req.rid}")
            run.first_tokens([req], env.now)
            kv = req.prompt_tokens + 1.0 + np.arange(req.gen_tokens, dtype=float)
            cuts = np.arange(0, req.gen_tokens, chunk)
            each_s, each_bytes = cost.decode_profile(1, kv)
            run.note_lone(req, pre_s + float(each_s.sum()))
            times = np.add.reduceat(each_s, cuts)
            sizes = np.add.reduceat(each_bytes, cuts)
            for t, b in zip(times.tolist(), sizes.tolist()):
                yield hbm.transfer(b, cap_bytes_per_s=b / t, label=f"decode {req.rid}")
            run.iterations += req.gen_tokens
            run.finish(req, start, env.now)
            yield pool.put(1)

        for req in run.requests:
            env.process(instance(req))
        yield env.timeout(0)
