"""Runs an exported deformable Mask R-CNN SavedModel on images and draws the results.

    python -m models.predict --saved_model=runs/dcnv2/export/saved_model \\
        --image=data/synthetic/val/000001.png --out=runs/dcnv2/prediction.png
    python -m models.predict --saved_model=runs/demo/export/saved_model \\
        --image=data/synthetic_demo/val/000001.png,data/synthetic_demo/val/000002.png \\
        --annotations=data/synthetic_demo/annotations/instances_val.json \\
        --class_names=background,ellipse,triangle,star,ring,cross,crescent

One picture: each image's detections, beside its ground truth with `--annotations`,
enlarged to tiles of at least `--min_tile` pixels. Needs only `keras_dcn` and
`models.serving.detector`, none of the training code.
"""

from absl import app
from absl import flags

from models.serving import detector

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("saved_model", None, "EXPORT_DIR/saved_model")
    flags.DEFINE_list("image", None, "input images (PNG / JPEG), comma-separated")
    flags.DEFINE_string("annotations", None,
                        "COCO instances JSON of the images: draws the ground truth beside")
    flags.DEFINE_string("out", "prediction.png", "output picture")
    flags.DEFINE_float("score_threshold", 0.5, "draw detections at this score or above")
    flags.DEFINE_string("class_names", None,
                        "comma-separated names by class id, starting at 0 (background)")
    flags.DEFINE_integer("min_tile", 256, "shorter side of each drawn image, at least")
    flags.DEFINE_integer("columns", 2, "images per row of the picture")
    flags.mark_flags_as_required(["saved_model", "image"])


def main(_):
    """Detects on the images, draws the detections and prints how many."""
    names = FLAGS.class_names.split(",") if FLAGS.class_names else None
    results = detector.predict_and_draw(
        FLAGS.saved_model, FLAGS.image, FLAGS.out, FLAGS.score_threshold, names,
        annotation_file=FLAGS.annotations, min_tile=FLAGS.min_tile, columns=FLAGS.columns)
    total = sum(len(r["scores"]) for r in results)
    shown = sum(int((r["scores"] >= FLAGS.score_threshold).sum()) for r in results)
    print(f"{len(results)} image(s), {total} detections, {shown} drawn (score >= "
          f"{FLAGS.score_threshold:g}): {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
