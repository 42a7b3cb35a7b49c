"""Evaluate an mmdet 3.x / mmseg 1.x checkpoint with a zoo backbone (see zoo/mm/launch.py for the options)."""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.mm.launch import test

if __name__ == '__main__':
    sys.exit(test())
