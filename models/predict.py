"""Runs an exported deformable Mask R-CNN SavedModel on an image and draws the result.

    python -m models.predict --saved_model=runs/dcnv2/export/saved_model \\
        --image=data/synthetic/val/000001.png --out=runs/dcnv2/prediction.png

Needs only `keras_dcn` and `models.serving.detector`, none of the training code.
"""

from absl import app
from absl import flags

from models.serving import detector

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("saved_model", None, "EXPORT_DIR/saved_model")
    flags.DEFINE_string("image", None, "input image (PNG / JPEG)")
    flags.DEFINE_string("out", "prediction.png", "output picture")
    flags.DEFINE_float("score_threshold", 0.5, "draw detections above this score")
    flags.DEFINE_string("class_names", None,
                        "comma-separated names by class id, starting at 0 (background)")
    flags.mark_flags_as_required(["saved_model", "image"])


def main(_):
    """Detects on the image, draws the detections and prints how many."""
    names = FLAGS.class_names.split(",") if FLAGS.class_names else None
    detections = detector.predict_and_draw(FLAGS.saved_model, FLAGS.image, FLAGS.out,
                                           FLAGS.score_threshold, names)
    shown = int((detections["scores"] >= FLAGS.score_threshold).sum())
    print(f"{len(detections['scores'])} detections, {shown} drawn (score >= "
          f"{FLAGS.score_threshold}): {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
