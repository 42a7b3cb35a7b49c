#!/usr/bin/env python
"""ONNX export of a zoo model, checked in ONNX Runtime (see zoo/export_onnx.py; also `zoo export`)."""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.export_onnx import main

if __name__ == '__main__':
    sys.exit(main())
