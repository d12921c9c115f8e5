"""Sweep grids: expansion (product, zip, explicit cases), checks with clear errors, hardware overrides, seeds."""

from __future__ import annotations

import pytest

from hwsim.hardware import load_hardware
from hwsim.suites.registry import get_suite
from hwsim.suites.sweep.grid import SweepError, expand
from hwsim.suites.sweep.overrides import OverrideError, apply, resolve

LINK = get_suite("link-sharing")


def _expand(doc, suite=LINK, **kw):
    return expand(doc, "grid.yaml", suite, **kw)


def test_product_zip_and_explicit_cases():
    grid = _expand({
        "fixed": {"flows": 100},
        "axes": {"load": [0.5, 0.7, 0.9], "hw.topology.link.bandwidth": ["50 GB/s", 1.5e11]},
        "zip": [{"size_dist": ["exponential", "fixed"], "mean_size_bytes": ["1e6", 2e6]}],
        "cases": [{"load": 0.95}],
    })
    assert len(grid.cases) == 3 * 2 * 2 + 1
    first = grid.cases[0].params
    assert first == {"load": 0.5, "hw.topology.link.bandwidth_bytes_per_s": 50e9, "size_dist": "exponential",
                     "mean_size_bytes": 1e6, "flows": 100}
    zipped = {(c.params["size_dist"], c.params["mean_size_bytes"]) for c in grid.cases[:-1]}
    assert zipped == {("exponential", 1e6), ("fixed", 2e6)}  # zipped lists advance together, never crossed
    assert grid.cases[-1].params == {"load": 0.95, "flows": 100}
    assert grid.axes == ("load", "hw.topology.link.bandwidth_bytes_per_s", "size_dist", "mean_size_bytes")
    assert len({c.case_id for c in grid.cases}) == len(grid.cases)
    assert len({c.seed for c in grid.cases}) == len(grid.cases)


def test_case_identity_and_seed_do_not_depend_on_order_or_spelling():
    a = _expand({"axes": {"load": [0.5, 0.7], "hw.topology.link.bandwidth": ["150 GB/s", "50 GB/s"]}})
    b = _expand({"axes": {"hw.topology.link.bandwidth_bytes_per_s": [5e10], "load": [0.7]}})
    c = next(x for x in a.cases if x.params["load"] == 0.7 and x.params["hw.topology.link.bandwidth_bytes_per_s"] == 5e10)
    assert (c.case_id, c.seed) == (b.cases[0].case_id, b.cases[0].seed)
    other_seed = _expand({"axes": {"hw.topology.link.bandwidth_bytes_per_s": [5e10], "load": [0.7]}}, seed=1)
    assert other_seed.cases[0].seed != c.seed and other_seed.cases[0].case_id != c.case_id


@pytest.mark.parametrize("doc, fragment", [
    ({"axis": {"load": [0.5]}}, "grid.yaml: field 'axis': unknown key"),
    ({"axes": {"lod": [0.5]}}, "grid.yaml: axes.lod[0]: suite 'link-sharing' has no parameter 'lod'"),
    ({"axes": {"load": [0.5, 1.5]}}, "grid.yaml: axes.load[1]: parameter 'load' has value 1.5; must be at most 0.99"),
    ({"axes": {"size_dist": ["pareto"]}}, "axes.size_dist[0]: parameter 'size_dist' has value 'pareto'; choose one of"),
    ({"axes": {"flows": [10.5]}}, "parameter 'flows' has value 10.5; expected an integer"),
    ({"axes": {"load": []}}, "grid.yaml: axes.load: expected a non-empty list"),
    ({"zip": [{"load": [0.5, 0.6], "flows": [100]}]}, "grid.yaml: zip[0]: zipped lists must be non-empty and of equal length"),
    ({"fixed": {"load": 0.5}, "axes": {"load": [0.6]}}, "key 'load' is set twice"),
    ({"axes": {"load": [0.5, 0.5]}}, "appears twice"),
    ({"axes": {"hw.topology.link.bandwith": ["1 GB/s"]}}, "axes.hw.topology.link.bandwith[0]: hardware override 'hw.topology.link.bandwith': no field 'bandwith'"),
    ({"axes": {"hw.topology.link.bandwidth": ["1 GHz"]}}, "unit 'GHz' in '1 GHz' is wrong here"),
    ({"axes": {"hw.topology.link.bandwidth": [0]}}, "hw.topology.link.bandwidth': value 0 must be positive"),
    ({"axes": {"load": [[0.5]]}}, "axes.load[0]: value [0.5] must be a string, number or boolean"),
    ({"hardware": "no-such-gpu", "axes": {"hw.device.clock": ["1 GHz"]}}, "unknown hardware 'no-such-gpu'"),
    ({"suite": "kernels-basic"}, "field 'suite': value 'kernels-basic' differs"),
    ({"seed": -1}, "field 'seed': value -1 must be a non-negative integer"),
])
def test_grid_errors_name_file_field_and_value(doc, fragment):
    with pytest.raises(SweepError) as info:
        _expand(doc)
    assert fragment in str(info.value)
    assert str(info.value).startswith("grid.yaml")


def test_a_suite_without_parameters_still_sweeps_hardware():
    kernels = get_suite("kernels-basic")
    with pytest.raises(SweepError, match="has no parameter 'n' \\(it has: none\\)"):
        _expand({"axes": {"n": [1]}}, suite=kernels)
    grid = _expand({"hardware": "h100-sxm", "axes": {"hw.device.memory.bandwidth": ["1 TB/s", "2 TB/s"]}}, suite=kernels)
    assert [c.params["hw.device.memory.bandwidth_bytes_per_s"] for c in grid.cases] == [1e12, 2e12]
    assert all(c.hardware == "h100-sxm" and c.suite_params == {} for c in grid.cases)


def test_overrides_replace_fields_and_are_checked_by_the_loader():
    hw = load_hardware("t3-gpu")
    changes = [resolve("device.memory.bandwidth", "2 TB/s", hw, "w"), resolve("topology.devices", 4, hw, "w"),
               resolve("device.peak.fp16", "200 TFLOP/s", hw, "w"), resolve("topology.link.latency", "1 us", hw, "w"),
               resolve("device.engines.dma.units", 2, hw, "w"), resolve("device.engines.dma.chunk", "64 KiB", hw, "w")]
    out = apply(hw, changes, "w")
    assert out.device.memory.bandwidth_bytes_per_s == 2e12 and out.topology.devices == 4
    assert out.device.peak("fp16") == 200e12 and out.topology.link.latency_s == pytest.approx(1e-6)
    assert out.device.engine("dma").units == 2 and out.device.engine("dma").param("chunk") == 65536
    assert out.device.memory.capacity_bytes == hw.device.memory.capacity_bytes  # untouched fields stay
    assert out.name.startswith("t3-gpu[") and "memory.bandwidth_bytes_per_s=2e+12" in out.name
    assert hw.device.memory.bandwidth_bytes_per_s == 1e12  # the loaded hardware is not changed
    with pytest.raises(OverrideError, match="is a group of fields"):
        resolve("device.memory", 1, hw, "w")
    with pytest.raises(OverrideError, match="topology.inter_link is not set on t3-gpu"):
        resolve("topology.inter_link.bandwidth", "1 GB/s", hw, "w")
    with pytest.raises(OverrideError, match="must be an integer"):
        resolve("topology.devices", 2.5, hw, "w")
    with pytest.raises(OverrideError, match="must be a number in \\(0, 1\\]"):
        apply(hw, [resolve("device.efficiency.compute_max", 1.5, hw, "w")], "w")
