import os
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py (the independent implementation), browser.py

# Several tests send Ctrl-C (SIGINT) to a command they started. A suite started as a background job of a
# non-interactive shell (`make test &`) inherits SIGINT ignored, and so would those commands (an ignored signal
# stays ignored across exec, and Python then installs no KeyboardInterrupt): give the suite, hence every command
# it starts, SIGINT's usual meaning.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def dates_checkpoint(tmp_path_factory):
    """A small model of the built-in dates task, trained by the command line: hidden size 16, 300 steps
    (a few seconds). Good for the shapes and plumbing of what reads checkpoints, not for its translations."""
    folder = tmp_path_factory.mktemp("dates")
    args = ["train", "--task", "dates", "--steps", "300", "--hidden-size", "16", "--embed-size", "16",
            "--batch-size", "32", "--eval-every", "150", "--log-every", "100", "--out", "run"]
    result = subprocess.run([sys.executable, "-m", "lstm_np"] + args, cwd=folder, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"training the dates fixture failed:\n{result.stdout}\n{result.stderr}"
    return folder / "run"
