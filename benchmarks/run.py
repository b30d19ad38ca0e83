"""Runs every benchmark (`make bench`): prints the tables and writes their JSON to
benchmarks/results/.

    python -m benchmarks.run [--quick]
"""

import argparse

from benchmarks import (bench_composite, bench_deform_conv, bench_deform_roi_pool,
                        bench_detector_step)

BENCHMARKS = (bench_deform_conv, bench_deform_roi_pool, bench_composite, bench_detector_step)


def main():
    parser = argparse.ArgumentParser(description="keras-dcn benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller cases, fewer repeats")
    args = parser.parse_args()
    for benchmark in BENCHMARKS:
        print("wrote", benchmark.report(benchmark.run(quick=args.quick)))


if __name__ == "__main__":
    main()
