"""DCNv2 models built on TF Model Garden and keras_dcn."""
