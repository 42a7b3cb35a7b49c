#!/usr/bin/env python
"""Upscale images with a zoo super-resolution model; see ``zoo.super_resolve`` (also ``zoo sr``)."""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.super_resolve import main

if __name__ == '__main__':
    sys.exit(main())
