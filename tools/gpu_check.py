#!/usr/bin/env python
"""One-call GPU check: versions, op tests, model parity, kernels that ran, speed, op table (see zoo/gpu_check.py)."""
import sys

from zoo.gpu_check import main

if __name__ == '__main__':
    sys.exit(main())
