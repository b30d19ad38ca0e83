"""Evaluation of trained models: COCO box and mask AP with Model Garden's evaluator."""
