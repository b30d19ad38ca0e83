"""DCNv2 models built on TF Model Garden and keras_dcn, laid out as a Model Garden project.

Libraries: `configs/` (dataclass configs and the registered experiments), `modeling/`
(backbone, layers, heads, R-CNN mimic branch, model and its factory), `tasks/` (the
Model Garden task), `data/` (synthetic data set, TFRecords), `training/`,
`evaluation/`, `serving/`, `analysis/` and `common/`; importing `registry_imports`
registers everything with Model Garden's factories. Command lines, each a thin module
with absl flags (`python -m models.<name> --help`): `train`, `evaluate`, `export`,
`predict`, `demo`, `ablation`, `analyze`, `create_synthetic_data`, `create_tfrecords`.
"""

import os

# TensorFlow turns its oneDNN CPU kernels on by default only where the CPU has AVX-512
# VNNI, BF16 or AMX; on others (AVX2 machines) they still train these models faster:
# on a 2-core AMD EPYC (Zen 3) the ResNet-18 classifier's step 3.8x, the Mask R-CNN's
# 1.15x. The variable must be set before TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0
# keeps them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
