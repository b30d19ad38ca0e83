"""Timing and memory helpers shared by the benchmarks."""

import ctypes
import json
import os
import pathlib
import statistics
import threading
import time

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


_M_MMAP_THRESHOLD = -3
_LIBC = ctypes.CDLL("libc.so.6")


def _set_mmap_threshold(nbytes):
    _LIBC.mallopt(_M_MMAP_THRESHOLD, nbytes)


class PeakRss:
    """Context manager sampling the resident set size every millisecond; `growth`
    is the peak above the RSS at entry, in bytes.

    Inside, glibc serves every allocation over 64 KiB with its own mapping and
    returns it on free, so a call's temporary buffers show up as RSS growth instead
    of being served from memory an earlier call left in the heap. On exit large
    allocations go back to the heap (32 MiB threshold), so timings measured
    afterwards do not pay for page faults.
    """

    def __enter__(self):
        _set_mmap_threshold(64 * 1024)
        self._start = self._peak = _rss_bytes()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.growth = self._peak - self._start
        _set_mmap_threshold(32 * 1024 * 1024)


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of `fn()` over `repeats` calls after `warmup` calls. `fn`
    must return something whose `.numpy()` forces the computation (or a list)."""
    def run():
        out = fn()
        for t in out if isinstance(out, (list, tuple)) else [out]:
            t.numpy()

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
