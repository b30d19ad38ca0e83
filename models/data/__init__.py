"""Data sets for the DCNv2 models: synthetic shapes in COCO format (``synthetic``) and
their conversion to Model Garden TFRecords (``tfrecords``, which needs TensorFlow)."""
