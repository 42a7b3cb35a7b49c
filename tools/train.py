#!/usr/bin/env python
"""Thin launcher for `zoo train` (implementation: zoo/train.py). Run with --help for the options."""
import sys

from zoo.train import main

if __name__ == '__main__':
    sys.exit(main())
