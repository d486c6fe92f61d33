"""`python -m lstm_np` is the `lstm-np` command."""
import sys

from .cli import main

sys.exit(main())
