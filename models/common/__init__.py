"""Helpers shared by the training, evaluation, serving and analysis code."""
