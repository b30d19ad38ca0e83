"""Draws the synthetic shapes instance-segmentation data set (COCO format).

    python -m models.create_synthetic_data --out=data/synthetic --train=2000 --val=200 \\
        --size=256 --seed=0 [--workers=2] [--tfrecord_shards=4]

Writes `OUT/{train,val}/*.png`, `OUT/annotations/instances_{train,val}.json` and
`OUT/manifest.json` (`models.data.synthetic`); a set that is up to date is not
redrawn. With `--tfrecord_shards=N` it also writes Model Garden TFRecords under
`OUT/tfrecords` (`models.data.tfrecords`).
"""

import dataclasses
import json
import time

from absl import app
from absl import flags

from models.data import synthetic

FLAGS = flags.FLAGS


class _SizeParser(flags.ArgumentParser):
    """Parses an image size written `N` or `HxW` into `(height, width)`."""

    def parse(self, argument):
        """`(height, width)` of `argument`; ValueError when it is neither form."""
        if isinstance(argument, tuple):
            return argument
        parts = str(argument).lower().split("x")
        if len(parts) in (1, 2) and all(part.strip().isdigit() for part in parts):
            return int(parts[0]), int(parts[-1])
        raise ValueError(f"size must be N or HxW, got {argument!r}")

    def flag_type(self):
        """The type shown in the help."""
        return "size"


class _SizeSerializer(flags.ArgumentSerializer):
    """Writes `(height, width)` as `HxW`."""

    def serialize(self, value):
        """`HxW` of `value`."""
        return f"{value[0]}x{value[1]}"


def define_flags():
    """Defines the flags of this command."""
    defaults = synthetic.GeneratorConfig()
    flags.DEFINE_string("out", None, "output folder")
    flags.DEFINE_integer("train", 2000, "training images")
    flags.DEFINE_integer("val", 200, "validation images")
    flags.DEFINE(_SizeParser(), "size", "256", "image size, N or HxW",
                 serializer=_SizeSerializer())
    flags.DEFINE_integer("seed", 0, "random seed of the images")
    flags.DEFINE_integer("workers", None, "processes (default: up to 4)")
    flags.DEFINE_integer("min_instances", defaults.min_instances,
                         "instances per image, at least")
    flags.DEFINE_integer("max_instances", defaults.max_instances,
                         "instances per image, at most")
    flags.DEFINE_boolean("force", False, "redraw even if up to date")
    flags.DEFINE_integer("tfrecord_shards", 0,
                         "N > 0: also write TFRecords (N shards for train, fewer for val) "
                         "under OUT/tfrecords")
    flags.mark_flag_as_required("out")


def main(_):
    """Draws the set, prints what it wrote, and writes the TFRecords when asked."""
    cfg = dataclasses.replace(synthetic.GeneratorConfig(),
                              min_instances=FLAGS.min_instances,
                              max_instances=FLAGS.max_instances)
    start = time.perf_counter()
    paths = synthetic.generate(FLAGS.out, FLAGS.train, FLAGS.val, FLAGS.size, FLAGS.seed,
                               workers=FLAGS.workers, config=cfg, force=FLAGS.force)
    elapsed = time.perf_counter() - start
    if paths.reused:
        print(f"{paths.root}: up to date (manifest matches), nothing redrawn")
    else:
        total = FLAGS.train + FLAGS.val
        print(f"{paths.root}: {total} images in {elapsed:.1f} s "
              f"({total / max(elapsed, 1e-9) * 60:.0f} images/min)")
    for split in synthetic.SPLITS:
        coco = json.loads(paths.annotations[split].read_text())
        print(f"  {split}: {len(coco['images'])} images, {len(coco['annotations'])} instances, "
              f"{paths.annotations[split]}")
    if FLAGS.tfrecord_shards > 0:
        from models.data import tfrecords  # TensorFlow only when asked for

        for split in synthetic.SPLITS:
            shards = FLAGS.tfrecord_shards if split == "train" else max(
                1, FLAGS.tfrecord_shards // 4)
            files = tfrecords.convert_split(paths.root, split, num_shards=shards)
            print(f"  {split}: {len(files)} TFRecord shard(s) in {files[0].parent}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
