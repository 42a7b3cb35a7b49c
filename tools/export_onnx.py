#!/usr/bin/env python
"""ONNX export of a zoo model, checked in ONNX Runtime (see zoo/export_onnx.py; also `zoo export`)."""
import sys

from zoo.export_onnx import main

if __name__ == '__main__':
    sys.exit(main())
