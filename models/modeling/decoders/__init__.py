"""Decoders of the deformable detectors: the Faster R-CNN's conv4 / conv5 feature maps."""
