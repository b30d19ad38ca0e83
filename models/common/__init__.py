"""Code shared across `models/`: what running an experiment needs (params,
checkpoints, distribution strategies), image files, and the console output of the
commands."""
