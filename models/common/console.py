"""Console output of the commands that show their progress (demo, ablation, analysis)."""

from absl import flags
from absl import logging


def show_warnings_only():
    """Logs warnings and errors only, unless `--verbosity` was given: `app.run` turns
    INFO on, and the INFO lines of Model Garden and TensorFlow would bury the progress
    display."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
