"""Writes Model Garden TFRecords for a COCO-format data set.

    python -m models.create_tfrecords --root=data/synthetic --shards=8

The data set is laid out as `ROOT/{split}/*.png` and
`ROOT/annotations/instances_{split}.json`; the records go to
`ROOT/tfrecords/{split}-*.tfrecord` (`models.data.tfrecords`), and shards that are up
to date are not rewritten. Images and annotations that cannot be trained on are left
out (`models.data.coco_checks`); each split's summary is printed and the full list,
with the reasons, is in `ROOT/tfrecords/{split}_report.json`.
"""

import json

from absl import app
from absl import flags

from models.data import tfrecords

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("root", None, "data set folder")
    flags.DEFINE_list("splits", ["train", "val"], "splits to convert")
    flags.DEFINE_integer("shards", 1, "shards per split")
    flags.DEFINE_boolean("masks", True, "write the instance masks (--nomasks: boxes only)")
    flags.DEFINE_boolean("force", False, "rewrite even if up to date")
    flags.mark_flag_as_required("root")


def main(_):
    """Converts each split; prints where its shards are and what was left out."""
    for split in FLAGS.splits:
        paths = tfrecords.convert_split(FLAGS.root, split, FLAGS.shards, FLAGS.masks,
                                        FLAGS.force)
        report = tfrecords.report_path(paths[0].parent / split)
        print(f"{split}: {len(paths)} shard(s), {paths[0].parent}/{split}-*.tfrecord")
        for line in tfrecords.report_summary(json.loads(report.read_text())):
            print(f"  {line}")
        print(f"  report: {report}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
