#!/usr/bin/env python
"""Upscale images with a zoo super-resolution model; see ``zoo.super_resolve`` (also ``zoo sr``)."""
import sys

from zoo.super_resolve import main

if __name__ == '__main__':
    sys.exit(main())
