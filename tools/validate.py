#!/usr/bin/env python
"""Thin launcher for `zoo validate` (implementation: zoo/validate.py). Run with --help for the options."""
import sys

from zoo.validate import main

if __name__ == '__main__':
    sys.exit(main())
