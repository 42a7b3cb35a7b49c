"""zoo.models: one file per family. Importing this package registers every model with timm.

Every module in this folder whose name does not start with an underscore is a family file and
is imported here, so a new family needs no edit outside its own file.
"""
import importlib
import pkgutil

from ._builder import is_zoo_model, to_zoo_name, zoo_model_names

_FAMILIES = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_'))
for _name in _FAMILIES:
    importlib.import_module(f'{__name__}.{_name}')

__all__ = ['zoo_model_names', 'to_zoo_name', 'is_zoo_model']
