"""Data sets for the DCNv2 models: synthetic shapes in COCO format (``synthetic``),
checks of COCO annotations (``coco_checks``), their conversion to Model Garden
TFRecords (``tfrecords``) and checks of TFRecord files (``record_files``); all but
``synthetic`` need TensorFlow."""
