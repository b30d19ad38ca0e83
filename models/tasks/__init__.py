"""The Model Garden task of the deformable Mask R-CNN."""
