"""The benchmark harness's arithmetic and bookkeeping (benchmarks/stats.py, cases.py, report.py).
Nothing here is timed: the inputs are made-up times whose ratios, spreads and slopes are known."""
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import cases as C  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.stats import (Spread, geomean, geomean_per_round, loglog_slope, ratio_spread,  # noqa: E402
                              round_ratios, spread, verdict)


def test_round_ratios_pair_rounds_and_skip_failed_ones():
    # round 2 of the other engine failed (None): no ratio for that round, not a zero
    assert round_ratios([2.0, 3.0, 4.0], [1.0, None, 8.0]) == [2.0, None, 0.5]
    with pytest.raises(ValueError):
        round_ratios([1.0], [1.0, 2.0])


def test_ratio_spread_is_median_of_per_round_ratios_with_min_and_max():
    # per-round ratios 1.0, 2.0, 4.0, 0.5, 3.0 -> sorted 0.5 1 2 3 4: median 2, range 0.5–4.
    # The ratio of the medians (median 2 / median 1) would also be 2, but not for the next case.
    s = ratio_spread([1, 2, 4, 1, 3], [1, 1, 1, 2, 1])
    assert s == Spread(2.0, 0.5, 4.0, 5)
    # medians of the times: 3 and 3 -> 1.0; per-round ratios 3/1, 3/3, 3/9 -> median 1.0 as well,
    # but the spread shows what the ratio of medians hides: 0.33 to 3
    s = ratio_spread([3, 3, 3], [1, 3, 9])
    assert s.median == 1.0 and s.low == pytest.approx(1 / 3) and s.high == 3.0


def test_spread_text_and_empty():
    assert Spread(1.234, 1.1, 1.4, 3).text() == "1.23 (1.10–1.40)"
    assert Spread(1.234, 1.234, 1.234, 1).text() == "1.23"
    assert spread([None, None]) is None
    assert spread([2.0, float("nan"), 4.0]) == Spread(3.0, 2.0, 4.0, 2)


def test_geomean_and_per_round_geomean():
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert math.isnan(geomean([]))
    # two cases, three rounds; round 3 of case 2 failed, so round 3 has no summary
    rows = [[1.0, 4.0, 2.0], [4.0, 1.0, None]]
    per_round = geomean_per_round(rows)
    assert per_round[0] == pytest.approx(2.0) and per_round[1] == pytest.approx(2.0) and per_round[2] is None


def test_loglog_slope_recovers_power_laws():
    batches = [1, 8, 64, 256]
    a, r2 = loglog_slope(batches, [0.003 * b ** 0.9 for b in batches])
    assert a == pytest.approx(0.9) and r2 == pytest.approx(1.0)
    # a fixed cost of 1 ms plus 0.1 ms per sample bends the curve: slope between 0 and 1, r² < 1
    a, r2 = loglog_slope(batches, [1e-3 + 1e-4 * b for b in batches])
    assert 0.3 < a < 0.9 and r2 < 0.99
    # pixel count: time ∝ side² gives b = 2
    assert loglog_slope([32, 64, 128], [s * s for s in (32, 64, 128)])[0] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        loglog_slope([8, 8], [1.0, 2.0])
    with pytest.raises(ValueError):
        loglog_slope([8], [1.0])


def test_verdict():
    assert verdict(Spread(0.7, 0.6, 0.75, 5), 0.8) == "met"
    assert verdict(Spread(0.7, 0.6, 0.9, 5), 0.8) == "median met, spread crosses"
    assert verdict(Spread(0.9, 0.7, 1.0, 5), 0.8) == "not met"
    assert verdict(None, 0.8) == "no data"
    assert verdict(Spread(0.9, 0.7, 1.0, 5), None) == "—"


def test_case_keys_round_trip_and_refuse_garbage():
    for mode in C.CONV_MODES:
        for i, case in enumerate(C.CONV_CASES):
            assert C.parse_key(C.conv_key(mode, i)) == ("conv", mode, case)
    for comp in C.LENET_COMPARISONS + C.NET_COMPARISONS:
        assert C.parse_key(comp.case.key) == ("net", comp.case)
    for bad in ("net/vgg/train/b1/s32", "conv/back/0", "nothing"):
        with pytest.raises(ValueError):
            C.parse_key(bad)


def test_scaling_grid_has_each_point_once():
    # lenet5 inference: batches 1, 8, 64, 256 at 32², then 28² and 64² at batch 8 (32² at batch 8
    # is already in the batch sweep): 6 points
    grid = C.scaling_cases("lenet5", "infer")
    assert [(c.batch, c.size) for c in grid] == [(1, 32), (8, 32), (64, 32), (256, 32), (8, 28), (8, 64)]
    for net in C.SCALING:
        for kind in ("infer", "train"):
            keys = [c.key for c in C.scaling_cases(net, kind)]
            assert len(keys) == len(set(keys))


def _row(section, key, label, ours, theirs, goal=None):
    return {"section": section, "key": key, "label": label, "engines": ["convscope", "torch"],
            "times": {"convscope": ours, "torch": theirs}, "rss_rise": {"convscope": [None] * len(ours),
                                                                        "torch": [None] * len(ours)},
            "params": {}, "errors": {}, "goals": {"torch": goal}, "extra": {}}


def test_conv_summary_uses_per_round_geometric_means_and_the_worst_layer():
    # two layers, two rounds: ratios (0.5, 2.0) and (2.0, 2.0) -> round geomeans 1.0 and 2.0
    rows = [_row("conv fwd", "conv/fwd/0", "a", [1.0, 4.0], [2.0, 2.0], 2.0),
            _row("conv fwd", "conv/fwd/1", "b", [2.0, 2.0], [1.0, 1.0], 2.0)]
    lines = report.conv_summary(rows)
    assert "| 1.50 (1.00–2.00) | ≤ 1 | not met |" in lines[0]
    # medians: layer a 1.25, layer b 2.0: the worst is b, at the goal (2.0 ≤ 2.0): met
    assert "worst layer: b" in lines[1] and lines[1].endswith("| met |")


def test_write_readme_replaces_only_the_marked_section(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nhistory\n", encoding="utf-8")
    report.write_readme("new table\n", str(path))
    assert path.read_text(encoding="utf-8") == f"intro\n{report.BEGIN}\nnew table\n{report.END}\nhistory\n"
    path.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        report.write_readme("x", str(path))


def test_fmt_time_units():
    assert report.fmt_time(12.3) == "12.3 s"
    assert report.fmt_time(1.234) == "1.23 s"
    assert report.fmt_time(0.1234) == "123 ms"
    assert report.fmt_time(0.01234) == "12.3 ms"
    assert report.fmt_time(0.001234) == "1.23 ms"
    assert report.fmt_time(0.00003) == "0.030 ms"
    assert report.fmt_time(None) == "—"


def test_digits_torch_loop_uses_the_main_jobs_split_and_scaling():
    """The plain PyTorch loop must train on exactly the images convscope's main job trains,
    validates and tests on: 1,294 / 144 / 359 of scikit-learn's 1,797 digits, scaled x/16."""
    pytest.importorskip("torch")
    import numpy as np

    from benchmarks.digits_torch_loop import make_model, split_digits
    from convscope.train import preprocessing
    from convscope.train.data import load_digits
    from convscope.train.trainer import default_spec
    import convscope as cs

    data = load_digits()
    parts = split_digits()
    assert [len(p[1]) for p in parts] == [1294, 144, 359]
    for (x, y), ours in zip(parts, (data.train, data.val, data.test)):
        assert np.array_equal(x, preprocessing.normalize(ours.x, data.preprocessing))
        assert np.array_equal(y, ours.y)
    # the same network: 38,282 parameters as the README's main job states
    model = cs.from_spec(default_spec((1, 8, 8), 10)).build((1, 8, 8), seed=0)
    assert sum(p.value.size for p in model.parameters()) == 38282
    assert sum(p.numel() for p in make_model().parameters()) == 38282


def test_benchmark_env_unsets_the_kernel_overrides_and_pins_threads(monkeypatch):
    from benchmarks.env import ROOT as root, benchmark_env

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = benchmark_env(2)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert [env[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")] == ["2"] * 3
    assert env["PYTHONPATH"] == os.path.join(root, "src") + os.pathsep + "/elsewhere"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # only the benchmark processes lose it
