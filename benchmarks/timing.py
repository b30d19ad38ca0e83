"""Timing and memory helpers shared by the benchmarks."""

import ctypes
import json
import os
import pathlib
import platform
import statistics
import time

import numpy as np

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LIBC = ctypes.CDLL("libc.so.6")


# The CPU features that decide which code runs fastest (as /proc/cpuinfo names them).
SPEED_FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                  "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                  "amx_fp16")


def cpu(cpuinfo="/proc/cpuinfo"):
    """The CPU the benchmarks run on: {"model": its model name, with its family and
    model numbers (which tell CPU generations apart where the name does not, as in
    a bare "AMD EPYC"), "features": those of SPEED_FEATURES it has, "cores": the
    cores this process may use}, read from the first processor of `cpuinfo` (the
    model falls back to the platform's name where the file cannot be read)."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            first_processor = f.read().split("\n\n")[0]
    except OSError:
        first_processor = ""
    for line in first_processor.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        model += f" (family {fields['cpu family']}, model {fields['model']})"
    flags = set(fields.get("flags", "").split())
    return {"model": model, "features": [f for f in SPEED_FEATURES if f in flags],
            "cores": len(os.sched_getaffinity(0))}


def cpu_line():
    """cpu() in one line: model, cores and features."""
    info = cpu()
    return (f"{info['model']}, {info['cores']} cores, "
            f"{' '.join(info['features']) or 'no AVX2/AVX-512'}")


def _peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


class PeakRss:
    """Context manager measuring the peak resident set size reached inside it; `growth`
    is that peak minus the RSS at entry, in bytes (None where Linux cannot reset the
    peak: writing 5 to /proc/self/clear_refs needs Linux 4.0).

    Inside, glibc serves every allocation over 64 KiB with its own mapping and returns
    it on free, and free heap memory is given back on entry, so a call's temporary
    buffers show up as RSS growth instead of being served from memory an earlier call
    left in the heap. On exit glibc is set to where its own adaptive thresholds settle
    once large blocks have been freed (setting one by hand turns the adaptation off):
    allocations up to 32 MiB come from the heap, and the heap keeps up to 64 MiB of
    free memory instead of returning it, so timings measured afterwards do not pay
    for page faults on every call.
    """

    def __enter__(self):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
        _LIBC.malloc_trim(0)
        self.growth = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak (VmHWM) to the current RSS
            self._start = _peak_rss_bytes()
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            self.growth = _peak_rss_bytes() - self._start
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)


def _force(out):
    for t in out if isinstance(out, (list, tuple)) else [out]:
        t.numpy()


def interleaved_times(fns, repeats, warmup=1):
    """Wall times in seconds of each of `fns` (name -> callable), one per round, calling
    them in turn `repeats` times after `warmup` rounds, so that load on the machine
    affects all of them alike and their ratios stay meaningful. Each callable must
    return something whose `.numpy()` forces the computation (or a list of such)."""
    return interleaved_wall_and_cpu_times(fns, repeats, warmup)[0]


def interleaved_wall_and_cpu_times(fns, repeats, warmup=1):
    """`(wall, cpu)`: each a dict name -> seconds a round, as `interleaved_times`
    measures them; `cpu` is the CPU time of the whole process (every thread, user and
    system) during the call, so `cpu / wall` is the number of cores kept busy (a
    thread spinning while it waits for work, as TensorFlow's pool threads do for a
    moment, counts as busy)."""
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for round_index in range(warmup + repeats):
        for name, fn in fns.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            _force(fn())
            if round_index >= warmup:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - cpu_start)
    return wall, cpu


def interleaved_medians(fns, repeats, warmup=1):
    """Median of interleaved_times(fns, repeats, warmup) for each name."""
    times = interleaved_times(fns, repeats, warmup)
    return {name: statistics.median(values) for name, values in times.items()}


def paired_ratio(numerators, denominators, confidence=0.9, resamples=4000, seed=0):
    """(median, low, high): the median of the per-round ratios of two interleaved
    series of times, and a bootstrap `confidence` interval of that median (resampling
    rounds with a fixed seed, so the interval is reproducible)."""
    ratios = np.asarray(numerators) / np.asarray(denominators)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, size=(resamples, ratios.size)), axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(np.median(ratios)), float(low), float(high)


def print_table(title, columns, rows):
    """Prints `rows` (dicts) as a fixed-width table of `columns` (key, header, fmt)."""
    cells = [[fmt.format(row[key]) for key, _, fmt in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def write_json(name, payload):
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def verdict(value, target):
    """'ok' when a measured ratio meets its target (at most `target`), else 'MISSED'."""
    return "ok" if value <= target else "MISSED"


def verdict_faster(high):
    """'ok' when a ratio is measurably below 1 (its interval's high end is below 1)."""
    return "ok" if high < 1.0 else "MISSED"
