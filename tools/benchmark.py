#!/usr/bin/env python
"""Speed / memory of zoo models side by side with timm or the reference ops (see zoo/benchmark.py)."""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.benchmark import main

if __name__ == '__main__':
    sys.exit(main())
