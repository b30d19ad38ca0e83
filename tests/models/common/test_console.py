"""models.common.console: the commands show warnings only, unless `--verbosity` asks
for more."""

from absl import flags
from absl import logging
import pytest

from models.common import console


@pytest.fixture
def parse_flags():
    """`parse_flags(*argv)` parses absl's flags as a command's `app.run` does; the
    flags and the verbosity are put back after the test."""
    before = logging.get_verbosity()

    def parse(*argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["command", *argv])

    yield parse
    flags.FLAGS.unparse_flags()
    logging.set_verbosity(before)


def test_warnings_only_without_verbosity(parse_flags):
    parse_flags()
    logging.set_verbosity(logging.INFO)  # app.run's default
    console.show_warnings_only()
    assert logging.get_verbosity() == logging.WARNING


@pytest.mark.parametrize("verbosity", ["0", "1"])
def test_a_given_verbosity_is_kept(parse_flags, verbosity):
    parse_flags(f"--verbosity={verbosity}")
    console.show_warnings_only()
    assert logging.get_verbosity() == int(verbosity)  # absl's 0: INFO, 1: DEBUG
