"""Train an mmdet 3.x / mmseg 1.x config with a zoo backbone (see zoo/mm/launch.py for the options)."""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.mm.launch import train

if __name__ == '__main__':
    sys.exit(train())
