"""benchmarks.timing: interleaved timing rounds, the peak memory of a block, the
paired ratio of two interleaved series and its interval, the CPU's model and features,
and the tables and JSON the benchmarks write; the half types' targets of
bench_deform_conv by CPU feature."""

import hashlib
import itertools
import json
import threading

import numpy as np
import pytest

from benchmarks import timing


def test_paired_ratio_of_proportional_series_is_exact():
    base = np.array([3.0, 5.0, 4.0, 7.0, 6.0])
    assert timing.paired_ratio(0.8 * base, base) == pytest.approx((0.8, 0.8, 0.8))


def test_paired_ratio_interval_brackets_the_median_of_noisy_ratios():
    rng = np.random.default_rng(1)
    base = rng.uniform(1.0, 2.0, size=31)
    ratios = 1.0 + rng.normal(0.0, 0.05, size=31)
    median, low, high = timing.paired_ratio(ratios * base, base)
    assert np.isclose(median, np.median(ratios))
    assert low < median < high
    # The interval of a median over 31 rounds is narrower than the spread of the rounds.
    assert low > np.quantile(ratios, 0.05) and high < np.quantile(ratios, 0.95)


def test_verdict_faster_needs_the_whole_interval_below_one():
    assert timing.verdict_faster(0.97) == "ok"
    assert timing.verdict_faster(1.0) == "MISSED"
    assert timing.verdict_faster(1.03) == "MISSED"


def test_cpu_reads_model_and_speed_features_of_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8488C\n"
        "flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_bf16 amx_tile amx_bf16\n"
        "\nprocessor\t: 1\nmodel name\t: Other\nflags\t\t: sse2\n")
    info = timing.cpu(str(cpuinfo))
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8488C (family 6, model 143)"
    assert info["features"] == ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16",
                                "amx_tile", "amx_bf16"]
    assert info["cores"] >= 1


def test_cpu_without_cpuinfo_still_names_the_machine(tmp_path):
    info = timing.cpu(str(tmp_path / "missing"))
    assert info["model"] and info["features"] == []


class _Result:
    """A stand-in tensor that records when the timer forces it."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def numpy(self):
        self.log.append(f"force {self.name}")


def test_interleaved_times_take_turns_and_drop_the_warmup(monkeypatch):
    """Each round calls every function once, in turn; the clock runs one second per
    reading, so each call measures 1 s; the warm-up round is not recorded; lists of
    results are forced one by one."""
    monkeypatch.setattr(timing.time, "perf_counter", itertools.count().__next__)
    log = []

    def make(name, as_list):
        def fn():
            log.append(f"call {name}")
            result = _Result(log, name)
            return [result, result] if as_list else result
        return fn

    times = timing.interleaved_times({"a": make("a", False), "b": make("b", True)},
                                     repeats=2, warmup=1)
    assert times == {"a": [1, 1], "b": [1, 1]}
    assert log == ["call a", "force a", "call b", "force b", "force b"] * 3


def test_interleaved_cpu_times_are_the_process_clock_over_each_call(monkeypatch):
    """The CPU clock is read around each call, as the wall clock is: here it advances
    3 s a reading against the wall clock's 1 s, so each call shows 3 cores busy."""
    monkeypatch.setattr(timing.time, "perf_counter", itertools.count().__next__)
    monkeypatch.setattr(timing.time, "process_time", itertools.count(step=3).__next__)
    log = []
    fns = {name: (lambda name=name: _Result(log, name)) for name in ("a", "b")}
    wall, cpu = timing.interleaved_wall_and_cpu_times(fns, repeats=3, warmup=2)
    assert wall == {"a": [1, 1, 1], "b": [1, 1, 1]}
    assert cpu == {"a": [3, 3, 3], "b": [3, 3, 3]}
    assert log == ["force a", "force b"] * 5


def test_interleaved_cpu_time_counts_the_work_of_other_threads():
    """A call that waits while another thread works (hashing, which releases the GIL)
    shows that thread's CPU time: about its wall time, where the calling thread's own
    CPU time would be near zero."""
    data = bytes(32 * 2 ** 20)

    class Done:
        def numpy(self):
            return None

    def in_a_thread():
        worker = threading.Thread(
            target=lambda: [hashlib.sha256(data).digest() for _ in range(8)])
        worker.start()
        worker.join()
        return Done()

    wall, cpu = timing.interleaved_wall_and_cpu_times({"thread": in_a_thread},
                                                      repeats=3, warmup=0)
    assert max(c / w for c, w in zip(cpu["thread"], wall["thread"])) > 0.5


def test_interleaved_medians_are_the_medians_of_the_rounds(monkeypatch):
    rounds = {"slow": [3.0, 7.0, 5.0], "fast": [1.0, 2.0, 1.0]}
    monkeypatch.setattr(timing, "interleaved_times",
                        lambda fns, repeats, warmup: {name: rounds[name] for name in fns})
    assert timing.interleaved_medians(dict.fromkeys(rounds), repeats=3) == {
        "slow": 5.0, "fast": 1.0}


def test_peak_rss_counts_a_buffer_touched_inside():
    size = 64 * 2 ** 20
    with timing.PeakRss() as peak:
        buffer = np.ones(size, np.uint8)  # every page written
        del buffer
    if peak.growth is None:
        pytest.skip("this kernel cannot reset the peak RSS")
    # Within 10%: the peak is read from /proc in pages, after the interpreter's own
    # allocations and frees around the block.
    assert 0.9 * size <= peak.growth < 1.1 * size


def test_print_table_right_aligns_formatted_columns(capsys):
    columns = [("name", "op", "{}"), ("ms", "time (ms)", "{:.1f}")]
    timing.print_table("Title", columns, [{"name": "conv", "ms": 12.345},
                                          {"name": "roi_pool", "ms": 3.0}])
    assert capsys.readouterr().out.splitlines() == [
        "", "Title",
        "      op  time (ms)",
        "    conv       12.3",
        "roi_pool        3.0"]


def test_write_json_writes_the_payload_under_results(tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "RESULTS_DIR", tmp_path / "results")
    path = timing.write_json("bench", {"speedup": 1.5})
    assert path == tmp_path / "results" / "bench.json"
    assert json.loads(path.read_text()) == {"speedup": 1.5}


def test_half_type_targets_follow_the_cpu_features():
    from benchmarks.bench_deform_conv import half_type_target, half_type_verdict

    with_both = ["avx512_bf16", "avx512_fp16"]
    assert half_type_verdict("bfloat16", 0.74, 0.8, with_both) == "ok"
    assert half_type_verdict("bfloat16", 0.76, 0.8, with_both) == "MISSED"
    assert half_type_verdict("bfloat16", 0.95, 1.1, []) == "ok"  # no AVX512_BF16: <= 1x
    assert half_type_verdict("bfloat16", 1.05, 1.1, []) == "MISSED"
    assert half_type_verdict("float16", 0.97, 0.99, with_both) == "ok"
    assert half_type_verdict("float16", 0.97, 1.01, with_both) == "MISSED"
    assert half_type_verdict("float16", 1.0, 1.02, []) == "ok"
    assert half_type_verdict("float16", 1.01, 1.02, []) == "MISSED"
    assert half_type_target("bfloat16", with_both) == "<= 0.75x"
    assert half_type_target("float16", with_both) == "< 1x"
    assert half_type_target("float16", []) == "<= 1x"
