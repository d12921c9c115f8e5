"""A general LLM serving simulator: requests arrive, schedulers batch their decode iterations.

- :mod:`.cost`: what one prefill and one decode iteration cost on a device group (core cost models).
- :mod:`.run`: one run's context, per-request records and vLLM-style metrics, the run loop, replicas.
- :mod:`.batch`: the fused-batch loop every batching scheduler shares (hooks, O(changes) events).
- :mod:`.schedulers`: static and dynamic batching, continuous batching with a paged KV cache.
- :mod:`.instances`: concurrent model instances as FasterTransformer runs them.

Flover's own scheduler is in :mod:`hwsim.systems.flover`.
"""

from hwsim.systems.serving.batch import (
                                       Active,
                                       BatchScheduler,
                                       BatchState,
                                       SlottedBatchScheduler,
)
from hwsim.systems.serving.cost import IterationCost, ServingConfig
from hwsim.systems.serving.instances import ConcurrentInstances, instance_count
from hwsim.systems.serving.run import (
                                       ROUTERS,
                                       SLO_TPOT_S,
                                       SLO_TTFT_S,
                                       RequestRecord,
                                       RunResult,
                                       Scheduler,
                                       ServingRun,
                                       Step,
                                       route,
                                       simulate,
                                       simulate_replicas,
)
from hwsim.systems.serving.schedulers import (
                                       ContinuousPaged,
                                       DynamicBatching,
                                       StaticBatching,
)

__all__ = [
                                       "ROUTERS",
                                       "SLO_TPOT_S",
                                       "SLO_TTFT_S",
                                       "Active",
                                       "BatchScheduler",
                                       "BatchState",
                                       "ConcurrentInstances",
                                       "ContinuousPaged",
                                       "DynamicBatching",
                                       "IterationCost",
                                       "RequestRecord",
                                       "RunResult",
                                       "Scheduler",
                                       "ServingConfig",
                                       "ServingRun",
                                       "SlottedBatchScheduler",
                                       "StaticBatching",
                                       "Step",
                                       "instance_count",
                                       "route",
                                       "simulate",
                                       "simulate_replicas",
]
