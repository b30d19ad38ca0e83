"""Heads of the deformable Mask R-CNN: the Fast R-CNN head with access to its fc features."""
