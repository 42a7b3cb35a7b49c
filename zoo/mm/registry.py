"""The zoo's OpenMMLab registries (scope ``zoo``) and registration into mmdet's / mmseg's.

``zoo.mm.MODELS`` is a child of mmengine's root model registry with scope ``zoo`` (the pattern
mmpretrain uses), so any config -- mmdet's, mmseg's or a plain mmengine one -- can name
``type='zoo.Backbone'`` once ``custom_imports=dict(imports=['zoo.mm'])`` has run. The same classes
are also registered in mmdet's and mmseg's registries (when those are installed) under their
class names, so ``type='ZooBackbone'`` works inside an mmdet/mmseg default scope too.
"""
import importlib
from typing import Iterable, Optional

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

__all__ = ['MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'register_in_openmmlab']

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='zoo', locations=['zoo.mm'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='zoo', locations=['zoo.mm'])

# downstream packages whose registries also get the zoo's classes (skipped when not installed)
_DOWNSTREAM = ('mmdet', 'mmseg')


def register_in_openmmlab(cls, registry_name: str, zoo_registry: Registry, aliases: Iterable[str] = ()):
    """Register ``cls`` in the zoo registry (class name + aliases) and in mmdet's/mmseg's ``registry_name``."""
    zoo_registry.register_module(name=[cls.__name__, *aliases], module=cls)
    for package in _DOWNSTREAM:
        registry = _downstream_registry(package, registry_name)
        if registry is not None and cls.__name__ not in registry.module_dict:
            registry.register_module(module=cls)


def _downstream_registry(package: str, registry_name: str) -> Optional[Registry]:
    try:
        module = importlib.import_module(f'{package}.registry')
    except ImportError:
        return None
    return getattr(module, registry_name, None)
