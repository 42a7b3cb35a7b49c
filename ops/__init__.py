"""zoo.ops: fused operators, each with a readable pure-PyTorch reference beside its Triton kernels.

Every operator is a sub-package (``reference.py``, ``triton.py``, ``__init__.py`` with the
functional API). Which path runs is decided in one place, :mod:`zoo.ops._dispatch`.
"""
from ._dispatch import HAS_TRITON, ops_mode, use_triton
from .attention import attention, attention_reference
from .routing import routing_attention, routing_attention_reference

__all__ = [
    'HAS_TRITON', 'ops_mode', 'use_triton', 'attention', 'attention_reference', 'routing_attention',
    'routing_attention_reference',
]
