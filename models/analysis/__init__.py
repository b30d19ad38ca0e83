"""Spatial-support analysis of the deformable Mask R-CNN (Section 2 of the paper)."""
