#!/usr/bin/env python
"""Official checkpoint -> zoo safetensors. Same as ``zoo convert ...``; see :mod:`zoo.convert`.

    python tools/convert_weights.py moat --variant moat_0 --src <extracted TF checkpoint> --out moat_0.safetensors
"""
import sys

from zoo.convert import main

if __name__ == '__main__':
    sys.exit(main())
