"""What the programs share at their edge: one log format, and a user's mistake (a path, a key,
an option) reported in one line, without a traceback, with exit status 1."""

import contextlib
import logging
import sys

from distillation import CheckpointWriteError


class MissingDependency(ImportError):
    """An optional library a command needs and this environment lacks; the message says how to
    install it."""


USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, MissingDependency)
# What stops a training run that its user can act on, also in one line: a diverged run, and a
# checkpoint that could not be written (a full disk; --resume continues once there is room).
TRAINING_ERRORS = (FloatingPointError, CheckpointWriteError)


def start_logging(level=logging.INFO):
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level
    )


@contextlib.contextmanager
def errors_in_one_line(logger, also=()):
    """The block's user errors (and those of the types in `also`) as one logged line and exit 1."""
    try:
        yield
    except USER_ERRORS + tuple(also) as error:
        logger.error("%s", error)
        sys.exit(1)
