"""Training runs: Keras `fit` trainer and the synthetic runs of the demo, ablation and analysis."""
