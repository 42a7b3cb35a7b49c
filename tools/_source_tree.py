"""Imported first by every tool here: run from a source checkout that was never installed, the tools import the
``zoo`` beside them (``python tools/train.py`` puts ``tools/``, not the repository root, on ``sys.path``)."""
import importlib.util
import os
import sys

if importlib.util.find_spec('zoo') is None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
