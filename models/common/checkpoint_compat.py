"""Checks that a checkpoint was written by a model of the same shape before restoring it.

Restoring a checkpoint into a model built from a changed config either fails deep
inside TensorFlow (a variable's shape differs: another number of classes, head width)
or leaves variables silently at their initial values (another variant adds or drops
the deformable branches). `check_model_fits(model, path, params)` compares the
variables the checkpoint holds under `model/` with the model's own and raises
`CheckpointMismatchError` naming those that differ, and, when the checkpoint's folder
holds the `params.yaml` of the run that wrote it, the `task.model` settings changed
since.
"""

import os
from typing import Optional

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from official.core import config_definitions as cfg
from official.modeling import hyperparams

PARAMS_FILE = "params.yaml"
_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SHOWN = 5  # variables named per kind of difference


class CheckpointMismatchError(ValueError):
    """A checkpoint's variables do not fit the model it is restored into."""


def model_differences(model: tf.Module, path: str) -> dict:
    """How the variables the checkpoint `path` holds under `model/` differ from
    `model`'s: `{'shape': [(name, checkpoint shape, model shape)], 'checkpoint_only':
    [name], 'model_only': [name]}` (shapes as lists, names as the variables had them)."""
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor(_GRAPH_KEY))
    matched = tf.train.CheckpointView(path).match(tf.train.Checkpoint(model=model))
    found = set()
    differences = {"shape": [], "checkpoint_only": [], "model_only": []}
    for node_id in _model_nodes(graph):
        for attribute in graph.nodes[node_id].attributes:
            if attribute.name != "VARIABLE_VALUE":
                continue
            stored = shapes[attribute.checkpoint_key]
            name = attribute.full_name or attribute.checkpoint_key
            variable = matched.get(node_id)
            if not isinstance(variable, tf.Variable):
                differences["checkpoint_only"].append(name)
                continue
            found.add(id(variable))
            if list(variable.shape) != stored:
                differences["shape"].append((name, stored, list(variable.shape)))
    differences["model_only"] = [v.name.removesuffix(":0") for v in model.variables
                                 if id(v) not in found]
    return differences


def config_changes(path: str, params: cfg.ExperimentConfig) -> Optional[list]:
    """`['task.model.num_classes: 7 -> 5', ...]`: the `task.model` settings of `params`
    that differ from those in the `params.yaml` beside the checkpoint `path`; None
    without that file."""
    saved = os.path.join(os.path.dirname(path), PARAMS_FILE)
    if not tf.io.gfile.exists(saved):
        return None
    before = _flatten(hyperparams.read_yaml_to_params_dict(saved).as_dict()
                      .get("task", {}).get("model", {}), "task.model")
    after = _flatten(params.task.model.as_dict(), "task.model")
    return [f"{key}: {before.get(key)!r} -> {after.get(key)!r}"
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]


def check_model_fits(model: tf.Module, path: str,
                     params: Optional[cfg.ExperimentConfig] = None,
                     allow_unused: bool = False):
    """Raises `CheckpointMismatchError` unless the checkpoint `path` holds a variable of
    the same shape for every variable of `model` and, unless `allow_unused` (a model
    without training-only branches, for evaluation), nothing else under `model/`.
    `params`, the model's experiment, names the config settings that changed."""
    differences = model_differences(model, path)
    if allow_unused:
        differences["checkpoint_only"] = []
    if not any(differences.values()):
        return
    parts = []
    if differences["shape"]:
        shown = "; ".join(f"{name}: {stored} in the checkpoint, {now} in this model"
                          for name, stored, now in differences["shape"][:_SHOWN])
        parts.append(f"{len(differences['shape'])} variable(s) have another shape "
                     f"({shown})")
    for kind, where in (("checkpoint_only", "only in the checkpoint"),
                        ("model_only", "only in this model")):
        if differences[kind]:
            parts.append(f"{len(differences[kind])} variable(s) are {where} ("
                         + ", ".join(differences[kind][:_SHOWN]) + ")")
    changes = config_changes(path, params) if params is not None else None
    if changes:
        cause = "the model config changed since it was written: " + "; ".join(changes)
    else:
        cause = ("the model config changed since it was written (compare with "
                 f"{os.path.join(os.path.dirname(path), PARAMS_FILE)})")
    raise CheckpointMismatchError(
        f"The checkpoint {path} does not fit this model: {'; '.join(parts)}. Likely "
        f"{cause}. Resume with the config the run started with, or train into another "
        "folder (--model_dir).")


def _model_nodes(graph) -> list:
    """Node ids of the root's child `model` and everything below it, except what
    hangs off an `optimizer` edge (a compiled Keras model tracks its optimizer, whose
    state does not depend on the model's config and is partly created lazily)."""
    start = [c.node_id for c in graph.nodes[0].children if c.local_name == "model"]
    seen, todo = set(start), list(start)
    while todo:
        for c in graph.nodes[todo.pop()].children:
            if c.node_id not in seen and c.local_name != "optimizer":
                seen.add(c.node_id)
                todo.append(c.node_id)
    return sorted(seen)


def _flatten(values: dict, prefix: str) -> dict:
    """`{'a': {'b': 1}}` -> `{'prefix.a.b': 1}`."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat
