"""Exports a trained deformable Mask R-CNN as a SavedModel (Model Garden's export).

    python -m models.export --experiment=dcn_maskrcnn_synthetic \\
        --checkpoint=runs/dcnv2 --export_dir=runs/dcnv2/export [--params_override=...] \
        [--standard_ops_only]

Writes `EXPORT_DIR/saved_model`, `EXPORT_DIR/checkpoint` and `EXPORT_DIR/params.yaml`
(`models.serving.detection`); `python -m models.predict` runs the SavedModel. With
`--standard_ops_only` the SavedModel holds only standard TensorFlow ops (the
deformable ops as their composite), so it loads without keras_dcn: stock TF Serving.
"""

from absl import app
from absl import flags

from models.common import runtime
from models.serving import detection

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("experiment", None, "registered experiment")
    flags.DEFINE_multi_string("config_file", None, "YAML overrides, in order")
    flags.DEFINE_string("params_override", None, "YAML / JSON overrides (last)")
    flags.DEFINE_string("checkpoint", None, "checkpoint file or directory")
    flags.DEFINE_string("export_dir", None, "output folder")
    flags.DEFINE_integer("batch_size", 1, "batch size of the signature (0: any)")
    flags.DEFINE_bool("standard_ops_only", False,
                      "write the deformable ops as compositions of standard TensorFlow "
                      "ops, so that the SavedModel loads without keras_dcn")
    flags.mark_flags_as_required(["experiment", "checkpoint", "export_dir"])


def main(_):
    """Exports the checkpoint and prints where the SavedModel is."""
    params = runtime.experiment_params(FLAGS.experiment, *FLAGS.config_file or [],
                                       FLAGS.params_override)
    path = detection.export_saved_model(params, FLAGS.checkpoint, FLAGS.export_dir,
                                        FLAGS.batch_size or None,
                                        standard_ops_only=FLAGS.standard_ops_only)
    print(f"SavedModel: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
