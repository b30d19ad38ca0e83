"""Writes Model Garden TFRecords for a COCO-format data set.

    python -m models.create_tfrecords --root data/synthetic --shards 8

The data set is laid out as `ROOT/{split}/*.png` and
`ROOT/annotations/instances_{split}.json`; the records go to
`ROOT/tfrecords/{split}-*.tfrecord` (`models.data.tfrecords`), and shards that are up
to date are not rewritten.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from models.data import tfrecords


def main(argv: Sequence[str] | None = None) -> None:
    """Converts each split and prints where its shards are."""
    parser = argparse.ArgumentParser(
        prog="python -m models.create_tfrecords",
        description="Write Model Garden TFRecords for a COCO-format data set laid out as "
                    "ROOT/{split}/*.png and ROOT/annotations/instances_{split}.json.")
    parser.add_argument("--root", required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--shards", type=int, default=1, help="shards per split")
    parser.add_argument("--no-masks", action="store_true")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    for split in args.splits:
        paths = tfrecords.convert_split(args.root, split, args.shards, not args.no_masks,
                                        args.force)
        print(f"{split}: {len(paths)} shard(s), {paths[0].parent}/{split}-*.tfrecord")


if __name__ == "__main__":
    main()
