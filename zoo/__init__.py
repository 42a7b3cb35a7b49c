"""zoo: modern vision backbones as first-class timm models.

``import zoo`` registers every zoo model with timm: each as ``zoo_<name>``, and as the plain
``<name>`` wherever timm does not already ship that name (timm's models are never shadowed).
"""
import os
from typing import List, Optional

from ._source_tree import link_source_tree

link_source_tree(__name__, os.path.dirname(os.path.abspath(__file__)))  # a checkout runs uninstalled too
import timm  # noqa: E402

from . import models as _models  # noqa: E402, F401  (registers the models with timm)
from .models._builder import is_zoo_model, to_zoo_name, zoo_model_names  # noqa: E402

__version__ = '0.1.0'
__all__ = ['create_model', 'list_models', 'resolve_model_name', '__version__']


def resolve_model_name(name: str) -> str:
    """The timm name for a zoo model given plainly (``biformer_tiny``) or prefixed (``zoo_biformer_tiny``).

    Plain names always mean the zoo's model here, also where timm ships a model of that name
    (``efficientvit_m0``): use ``timm.create_model`` for timm's own.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f'model name must be a non-empty string, got {name!r}')
    if is_zoo_model(name):
        return to_zoo_name(name)
    close = zoo_model_names('*' + name.partition('.')[0].removeprefix('zoo_')[:4] + '*')
    hint = f' Similar zoo models: {", ".join(close[:8])}.' if close else ''
    raise ValueError(f'unknown zoo model {name!r}.{hint} See zoo.list_models().')


def create_model(name: str, pretrained: bool = False, **kwargs):
    """`timm.create_model` for zoo models, accepting plain or ``zoo_`` names."""
    return timm.create_model(resolve_model_name(name), pretrained=pretrained, **kwargs)


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Canonical (``zoo_``) names of the zoo's models; ``pattern`` may omit the prefix."""
    return zoo_model_names(pattern)
