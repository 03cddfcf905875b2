"""The names of the files a training run writes into its output folder: one place builds them,
one place reads them back.

    gs{step}.pkl          the student's state_dict after optimizer step `step` (TextBrewer's name)
    resume_gs{step}.pt    everything needed to continue the run from that step (resume.py)
"""

import os
import re

CHECKPOINT_NAME = re.compile(r"^gs(\d+)\.pkl$")
RESUME_STATE_NAME = re.compile(r"^resume_gs(\d+)\.pt$")


def checkpoint_path(output_dir, step):
    return os.path.join(output_dir, f"gs{step}.pkl")


def resume_state_path(output_dir, step):
    return os.path.join(output_dir, f"resume_gs{step}.pt")


def checkpoint_steps(output_dir):
    """The steps of the gs{step}.pkl files in output_dir, in increasing order."""
    return _steps(output_dir, CHECKPOINT_NAME)


def resume_state_steps(output_dir):
    """The steps of the resume_gs{step}.pt files in output_dir, in increasing order."""
    return _steps(output_dir, RESUME_STATE_NAME)


def _steps(output_dir, pattern):
    if not os.path.isdir(output_dir):
        return []
    return sorted(int(m.group(1)) for m in map(pattern.match, os.listdir(output_dir)) if m)
