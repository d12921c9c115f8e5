"""Runs one MoETuner solve in its own process so that the caller can kill it at a hard deadline.

Usage (internal): ``python -m hwsim.placement._worker PROBLEM.npz RESULT.npz OPTIONS_JSON``.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from hwsim.placement.ilp import MoETunerSolver, solve_gpu_of
from hwsim.placement.problem import PlacementProblem


def main(argv: list[str]) -> int:
    src, dst, options = argv
    opts = json.loads(options)
    with np.load(src, allow_pickle=False) as data:
        gpus, capacity, per_node = (int(v) for v in data["meta"])
        intra, inter = (float(v) for v in data["costs"])
        problem = PlacementProblem(loads=data["loads"], routing=data["routing"], gpus=gpus, capacity=capacity,
                                   gpus_per_node=per_node, intra_node_cost=intra, inter_node_cost=inter)
    solver = MoETunerSolver(method=opts["method"], time_limit_s=opts["time_limit_s"], gap_rel=opts["gap_rel"],
                            joint_max_vars=opts["joint_max_vars"], subprocess=False)
    gpu_of, info = solve_gpu_of(problem, solver, opts["backend"])
    with open(dst, "wb") as fh:
        np.savez(fh, gpu_of=gpu_of, info=np.array(json.dumps(info)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
