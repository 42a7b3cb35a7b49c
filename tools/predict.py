#!/usr/bin/env python
"""Thin launcher for `zoo predict` (implementation: zoo/predict.py). Run with --help for the options."""
import sys

from zoo.predict import main

if __name__ == '__main__':
    sys.exit(main())
