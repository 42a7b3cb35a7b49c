"""zoo: modern vision backbones as first-class timm models.

``import zoo`` registers every zoo model with timm: each as ``zoo_<name>``, and as the plain
``<name>`` wherever timm does not already ship that name (timm's models are never shadowed).

The one exception is the ``zoo`` command's own process: there ``zoo --help``, ``zoo <cmd> --help`` and
argument errors must answer without importing torch and every model family, so the families are
imported on first use (any function below, or ``import zoo.models``), which every command does before it
builds a model.
"""
import os
import sys
from typing import List, Optional

from ._source_tree import link_source_tree

link_source_tree(__name__, os.path.dirname(os.path.abspath(__file__)))  # a checkout runs uninstalled too

__version__ = '0.1.0'
__all__ = ['create_model', 'list_models', 'resolve_model_name', '__version__']


def _launched_by_zoo_command() -> bool:
    """True in the process of the ``zoo`` console script (its launcher imports ``zoo.cli``)."""
    path = getattr(sys.modules.get('__main__'), '__file__', None) or ''
    if os.path.splitext(os.path.basename(path))[0] not in ('zoo', 'zoo-script'):
        return False
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return 'from zoo.cli import main' in f.read(4096)
    except OSError:
        return False


def _registry():
    """``zoo.models`` (importing it registers every family with timm)."""
    from . import models
    return models


if not _launched_by_zoo_command():
    _registry()


def resolve_model_name(name: str) -> str:
    """The timm name for a zoo model given plainly (``biformer_tiny``) or prefixed (``zoo_biformer_tiny``).

    Plain names always mean the zoo's model here, also where timm ships a model of that name
    (``efficientvit_m0``): use ``timm.create_model`` for timm's own.
    """
    models = _registry()
    if not isinstance(name, str) or not name:
        raise ValueError(f'model name must be a non-empty string, got {name!r}')
    if models.is_zoo_model(name):
        return models.to_zoo_name(name)
    close = models.zoo_model_names('*' + name.partition('.')[0].removeprefix('zoo_')[:4] + '*')
    hint = f' Similar zoo models: {", ".join(close[:8])}.' if close else ''
    raise ValueError(f'unknown zoo model {name!r}.{hint} See zoo.list_models().')


def create_model(name: str, pretrained: bool = False, **kwargs):
    """`timm.create_model` for zoo models, accepting plain or ``zoo_`` names."""
    import timm
    return timm.create_model(resolve_model_name(name), pretrained=pretrained, **kwargs)


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Canonical (``zoo_``) names of the zoo's models; ``pattern`` may omit the prefix."""
    return _registry().zoo_model_names(pattern)
