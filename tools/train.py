#!/usr/bin/env python
"""Thin launcher for `zoo train` (implementation: zoo/train.py). Run with --help for the options."""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.train import main

if __name__ == '__main__':
    sys.exit(main())
