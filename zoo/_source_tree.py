"""Make ``import zoo`` work from a source checkout that was never installed.

The repository keeps ``models/`` and ``ops/`` next to ``zoo/`` and the install maps them into the one namespace
(setup.py's ``package_dir``: ``zoo.models = models``, ``zoo.ops = ops``). Without an install nothing tells Python
that ``zoo.models`` lives in ``../models``, and ``import zoo`` (run in the repository root) fails. This finder is
that mapping for a checkout: it resolves exactly ``zoo.models`` and ``zoo.ops`` (and, through their ``__path__``,
everything under them) to the folders beside *this* ``zoo/``, so the whole package always comes from one tree.
setuptools' editable-install finder does the same for an installed checkout; it cannot be used before installing.
"""
import importlib.abc
import importlib.util
import os
import sys
from typing import Dict

SUBPACKAGE_DIRS = {'models': 'models', 'ops': 'ops'}  # zoo.<name> -> folder beside zoo/ (setup.py's package_dir)


class _SourceTreeFinder(importlib.abc.MetaPathFinder):
    def __init__(self, folders: Dict[str, str]):
        self.folders = folders

    def find_spec(self, fullname, path=None, target=None):
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(folder, '__init__.py'), submodule_search_locations=[folder])


def link_source_tree(package: str, package_dir: str) -> None:
    """Map ``<package>.models`` / ``.ops`` to the folders beside ``package_dir`` when it sits in a source checkout.

    An installed (non-editable) package has ``models/`` and ``ops/`` inside it: nothing to do then.
    """
    if all(os.path.isdir(os.path.join(package_dir, sub)) for sub in SUBPACKAGE_DIRS):
        return
    root = os.path.dirname(package_dir)
    folders = {f'{package}.{sub}': os.path.join(root, folder) for sub, folder in SUBPACKAGE_DIRS.items()}
    missing = [f for f in folders.values() if not os.path.isfile(os.path.join(f, '__init__.py'))]
    if missing:
        raise ImportError(f'{package} at {package_dir} is incomplete: {", ".join(missing)} not found. Install the '
                          f'package (pip install -e . in the repository root) or use a complete checkout.')
    if not any(isinstance(f, _SourceTreeFinder) and f.folders == folders for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceTreeFinder(folders))
