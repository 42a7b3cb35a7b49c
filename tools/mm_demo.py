#!/usr/bin/env python
"""Thin launcher for `zoo mm-demo` (implementation: zoo/mm_demo.py). Run with --help for the options."""
import sys

from zoo.mm_demo import main

if __name__ == '__main__':
    sys.exit(main())
