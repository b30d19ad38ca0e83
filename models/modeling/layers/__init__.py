"""Layers for Model Garden's R-CNN models: the multilevel deformable RoI aligner."""
