"""Training: the Keras `fit` trainer, Model Garden's trainer, and the synthetic runs of
the demo, the ablation and the analysis."""
