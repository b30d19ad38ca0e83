"""Classification pretraining of the detector's backbone on synthetic shapes.

The paper initialises its backbones from ImageNet classification. Nothing of that
kind can be downloaded here, so the synthetic runs make their own stand-in: the
regular ResNet of the experiment (the `dcn_resnet` backbone with no deformable
stage) learns to classify images of single shapes (`models.data.synthetic.
classification_set`), with global average pooling of its last stage and one fc
layer. Its weights go to a checkpoint whose root holds `backbone`, the layout Model
Garden's `init_checkpoint_modules: backbone` reads, so every variant loads it as the
paper loads ImageNet weights: deformable convolutions take the regular kernels and
keep their zero-initialised offset branches (`DcnMaskRCNNTask.initialize`).

Images are normalised as Model Garden's detection input pipeline normalises them.
`pretrain_backbone` reuses the checkpoint of an earlier call with the same settings.
"""

import dataclasses
import json
import math
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.ops import preprocess_ops

from models.common import runtime
from models.configs import maskrcnn as dcn_config
from models.data import synthetic
from models.modeling.backbones import dcn_resnet  # noqa: F401  registers `dcn_resnet`

CHECKPOINT_NAME = "backbone"
SUMMARY_NAME = "pretraining.json"


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """How the backbone is pretrained.

    Attributes:
      image_size: side of the square classification images.
      train_images, val_images: images drawn for training and for the reported
        accuracy (another split of the generator's draws).
      steps: training steps; batch_size: images per step.
      learning_rate: peak of Adam's cosine-decayed learning rate.
      weight_decay: L2 weight decay of the kernels (as the detector's).
      seed: seed of the images, the initial weights and the order of the data.
      mixed_precision_dtype: 'bfloat16' or 'float16' to compute in that type with
        float32 variables (`models.common.runtime.mixed_precision`); 'float32'.
    """
    image_size: int = 64
    train_images: int = 6000
    val_images: int = 1000
    steps: int = 800
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    mixed_precision_dtype: str = "float32"


def regular_backbone_config(model_config: dcn_config.DcnMaskRCNN):
    """The backbone config of `model_config` with no deformable stage (the regular
    ResNet whose checkpoint every variant reads)."""
    backbone = dcn_config.resolve_variant(model_config).backbone
    if backbone.type != "dcn_resnet":
        raise ValueError(f"pretraining needs backbone.type 'dcn_resnet', got {backbone.type!r}")
    return backbone.replace(dcn_resnet={"deformable_stages": []})


def build_classifier(model_config: dcn_config.DcnMaskRCNN, num_classes: int,
                     image_size: int, weight_decay: float = 0.0):
    """`(classifier, backbone)`: the regular backbone of `model_config` with global
    average pooling of its last level and an fc layer, `[B, S, S, 3]` normalised
    images -> `[B, num_classes]` float32 logits."""
    regularizer = tf_keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None
    backbone = backbone_factory.build_backbone(
        input_specs=tf_keras.layers.InputSpec(shape=[None, image_size, image_size, 3]),
        backbone_config=regular_backbone_config(model_config),
        norm_activation_config=model_config.norm_activation,
        l2_regularizer=regularizer)
    images = tf_keras.Input([image_size, image_size, 3])
    features = backbone(images)
    last = features[str(max(int(level) for level in features))]
    pooled = tf_keras.layers.GlobalAveragePooling2D()(last)
    logits = tf_keras.layers.Dense(num_classes, kernel_regularizer=regularizer,
                                   dtype="float32", name="classifier")(pooled)
    return tf_keras.Model(images, logits, name="shape_classifier"), backbone


def _dataset(images, labels, batch_size=None, training=False, seed=0):
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        data = data.shuffle(len(images), seed=seed).repeat()

    def prepare(image, label):
        image = preprocess_ops.normalize_image(image)
        if training:
            image = tf.image.random_flip_left_right(image, seed=seed)
        return image, label

    data = data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size or len(images)).prefetch(tf.data.AUTOTUNE)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int):
    """`[num_classes, num_classes]` counts, rows the true class, columns the predicted."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def pretrain_backbone(out_dir: str, model_config: dcn_config.DcnMaskRCNN,
                      generator: synthetic.GeneratorConfig,
                      settings: PretrainSettings = PretrainSettings(),
                      verbose: int = 2) -> dict:
    """Pretrains the regular backbone of `model_config` on classifying the shapes
    `generator` draws (one per image), or reuses `out_dir`'s earlier result.

    Returns:
      The summary written to `out_dir/pretraining.json`: `checkpoint` (the path for
      `task.init_checkpoint`, modules `backbone`), `val_accuracy`, `confusion`
      (rows: true class in `synthetic.CLASS_NAMES` order), `seconds` and `reused`.
    """
    summary_path = os.path.join(out_dir, SUMMARY_NAME)
    backbone_config = regular_backbone_config(model_config).as_dict()
    key = {"settings": dataclasses.asdict(settings), "backbone": backbone_config,
           "norm_activation": model_config.norm_activation.as_dict(),
           "generator": dataclasses.asdict(generator)}
    key = json.loads(json.dumps(key))  # as it reads back from the summary
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        if summary.get("key") == key and tf.io.gfile.exists(summary["checkpoint"] + ".index"):
            return {**summary, "reused": True}

    started = time.perf_counter()
    num_classes = len(synthetic.CLASS_NAMES)
    train_x, train_y = synthetic.classification_set(
        settings.train_images, settings.image_size, settings.seed, "train", config=generator)
    val_x, val_y = synthetic.classification_set(
        settings.val_images, settings.image_size, settings.seed, "val", config=generator)
    tf_keras.utils.set_random_seed(settings.seed)
    with runtime.mixed_precision(settings.mixed_precision_dtype):
        classifier, backbone = build_classifier(model_config, num_classes,
                                                settings.image_size, settings.weight_decay)
    schedule = tf_keras.optimizers.schedules.CosineDecay(settings.learning_rate,
                                                         settings.steps)
    classifier.compile(
        optimizer=tf_keras.optimizers.Adam(schedule),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    epochs = math.gcd(settings.steps, 10)  # ten progress lines when steps allow
    classifier.fit(
        _dataset(train_x, train_y, settings.batch_size, training=True, seed=settings.seed),
        steps_per_epoch=settings.steps // epochs, epochs=epochs, verbose=verbose)
    logits = classifier.predict(_dataset(val_x, val_y, batch_size=256), verbose=0)
    predictions = np.argmax(logits, axis=-1)

    tf.io.gfile.makedirs(out_dir)
    checkpoint = tf.train.Checkpoint(backbone=backbone).write(
        os.path.join(out_dir, CHECKPOINT_NAME))
    summary = {
        "checkpoint": checkpoint,
        "val_accuracy": float(np.mean(predictions == val_y)),
        "confusion": confusion_matrix(val_y, predictions, num_classes).tolist(),
        "classes": list(synthetic.CLASS_NAMES),
        "seconds": time.perf_counter() - started,
        "key": key,
    }
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    return {**summary, "reused": False}
