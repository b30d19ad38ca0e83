"""The deformable Mask R-CNN: backbone, layers, heads, the R-CNN feature-mimicking branch,
the Keras model and the factory that builds it from a config."""
