#!/usr/bin/env python
"""Speed / memory of zoo models side by side with timm or the reference ops (see zoo/benchmark.py)."""
import sys

from zoo.benchmark import main

if __name__ == '__main__':
    sys.exit(main())
