"""Layers for Model Garden's R-CNN models: the multilevel deformable RoI aligner."""

from models.layers.deform_roi_aligner import MultilevelDeformableROIAligner, assign_levels

__all__ = ["MultilevelDeformableROIAligner", "assign_levels"]
