#!/usr/bin/env python
"""Official checkpoint -> zoo safetensors. Same as ``zoo convert ...``; see :mod:`zoo.convert`.

    python tools/convert_weights.py moat --variant moat_0 --src <extracted TF checkpoint> --out moat_0.safetensors
"""
import sys

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)

from zoo.convert import main

if __name__ == '__main__':
    sys.exit(main())
