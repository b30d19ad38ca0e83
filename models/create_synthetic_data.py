"""Draws the synthetic shapes instance-segmentation data set (COCO format).

    python -m models.create_synthetic_data --out data/synthetic --train 2000 --val 200 \\
        --size 256 --seed 0 [--workers 2] [--tfrecord-shards 4]

Writes `OUT/{train,val}/*.png`, `OUT/annotations/instances_{train,val}.json` and
`OUT/manifest.json` (`models.data.synthetic`); a set that is up to date is not
redrawn. With `--tfrecord-shards N` it also writes Model Garden TFRecords under
`OUT/tfrecords` (`models.data.tfrecords`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Sequence

from models.data import synthetic


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")


def main(argv: Sequence[str] | None = None) -> None:
    """Draws the set, prints what it wrote, and writes the TFRecords when asked."""
    defaults = synthetic.GeneratorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m models.create_synthetic_data",
        description="Generate the synthetic shapes instance-segmentation data set (COCO format).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--val", type=int, default=200, help="validation images")
    parser.add_argument("--size", type=_parse_size, default=(256, 256),
                        help="image size, N or HxW (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: up to 4)")
    parser.add_argument("--min-instances", type=int, default=defaults.min_instances)
    parser.add_argument("--max-instances", type=int, default=defaults.max_instances)
    parser.add_argument("--force", action="store_true", help="redraw even if up to date")
    parser.add_argument("--tfrecord-shards", type=int, default=0, metavar="N",
                        help="also write TFRecords (N shards for train, fewer for val) "
                             "under OUT/tfrecords")
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(defaults, min_instances=args.min_instances,
                              max_instances=args.max_instances)
    start = time.perf_counter()
    paths = synthetic.generate(args.out, args.train, args.val, args.size, args.seed,
                               workers=args.workers, config=cfg, force=args.force)
    elapsed = time.perf_counter() - start
    if paths.reused:
        print(f"{paths.root}: up to date (manifest matches), nothing redrawn")
    else:
        total = args.train + args.val
        print(f"{paths.root}: {total} images in {elapsed:.1f} s "
              f"({total / max(elapsed, 1e-9) * 60:.0f} images/min)")
    for split in synthetic.SPLITS:
        coco = json.loads(paths.annotations[split].read_text())
        print(f"  {split}: {len(coco['images'])} images, {len(coco['annotations'])} instances, "
              f"{paths.annotations[split]}")
    if args.tfrecord_shards > 0:
        from models.data import tfrecords  # TensorFlow only when asked for

        for split in synthetic.SPLITS:
            shards = args.tfrecord_shards if split == "train" else max(
                1, args.tfrecord_shards // 4)
            files = tfrecords.convert_split(paths.root, split, num_shards=shards)
            print(f"  {split}: {len(files)} TFRecord shard(s) in {files[0].parent}")


if __name__ == "__main__":
    main()
