"""zoo.ops: fused operators, each with a readable pure-PyTorch reference beside its Triton kernels.

Every operator is a sub-package (``reference.py``, ``triton.py``, ``__init__.py`` with the
functional API). Which path runs is decided in one place, :mod:`zoo.ops._dispatch`.
"""
from ._dispatch import HAS_TRITON, ops_mode, use_triton
from .attention import attention, attention_reference
from .channel_attention import channel_attention, channel_attention_reference
from .neighborhood import (
    neighborhood_av,
    neighborhood_av_reference,
    neighborhood_qk,
    neighborhood_qk_reference,
    neighborhood_rpb,
)
from .outlook import outlook_attention, outlook_attention_reference
from .routing import routing_attention, routing_attention_reference
from .selective_scan import selective_scan_states, selective_scan_states_reference

__all__ = [
    'HAS_TRITON', 'ops_mode', 'use_triton', 'attention', 'attention_reference', 'routing_attention',
    'routing_attention_reference', 'outlook_attention', 'outlook_attention_reference', 'channel_attention',
    'channel_attention_reference', 'neighborhood_qk', 'neighborhood_av', 'neighborhood_rpb',
    'neighborhood_qk_reference', 'neighborhood_av_reference', 'selective_scan_states',
    'selective_scan_states_reference',
]
