"""DCNv2 models built on TF Model Garden and keras_dcn, laid out as a Model Garden project.

Libraries: `configs/` (dataclass configs and the registered experiments), `modeling/`
(backbone, layers, heads, R-CNN mimic branch, model and its factory), `tasks/` (the
Model Garden task), `data/` (synthetic data set, TFRecords), `training/`,
`evaluation/`, `serving/`, `analysis/` and `common/`; importing `registry_imports`
registers everything with Model Garden's factories. Command lines, each a thin module
with absl flags (`python -m models.<name> --help`): `train`, `evaluate`, `export`,
`predict`, `demo`, `ablation`, `analyze`, `create_synthetic_data`, `create_tfrecords`.
"""
