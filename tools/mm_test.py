"""Evaluate an mmdet 3.x / mmseg 1.x checkpoint with a zoo backbone (see zoo/mm/launch.py for the options)."""
import sys

from zoo.mm.launch import test

if __name__ == '__main__':
    sys.exit(test())
