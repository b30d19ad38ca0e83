"""Dataclass configs of the deformable Mask R-CNN and its registered experiments."""
