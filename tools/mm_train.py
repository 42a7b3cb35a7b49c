"""Train an mmdet 3.x / mmseg 1.x config with a zoo backbone (see zoo/mm/launch.py for the options)."""
import sys

from zoo.mm.launch import train

if __name__ == '__main__':
    sys.exit(train())
