"""Let mmengine load its own checkpoints under torch's safe ``weights_only=True`` default.

mmengine 0.10.7 loads checkpoints with torch's loader without passing ``weights_only``; since torch 2.6 that means
``weights_only=True``, which refuses the non-tensor objects mmengine itself writes into every
checkpoint (the message hub's ``HistoryBuffer`` logs, holding numpy arrays and scalars), so
``--resume`` and testing a saved checkpoint fail. Rather than switching safe loading off, the
specific, data-only classes mmengine writes are added to torch's allow-list.

One thing in those checkpoints cannot be allow-listed safely: ``HistoryBuffer.__getstate__`` also
pickles the class-wide table of statistics *functions* (``HistoryBuffer.min`` ...), which pickle
stores as ``builtins.getattr(HistoryBuffer, 'min')`` -- and allowing ``getattr`` would let a
checkpoint reach arbitrary attributes, i.e. run code. That table is class state (rebuilt on import,
and by whatever code registers custom statistics), not data, and mmengine's ``__setstate__`` already
accepts a state without it. So while ``zoo.mm`` is imported, ``HistoryBuffer`` pickles just its data.
Checkpoints written by mmengine *without* zoo.mm still hold the ``getattr`` entries; loading those
needs unsafe (pickle-executing) loading of a file you trust -- zoo never does that for you.
"""
import torch

__all__ = ['allow_mmengine_checkpoints', 'MMENGINE_SAFE_GLOBALS']


def _numpy_globals():
    import numpy as np
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def _history_buffer_state(self) -> dict:
    """HistoryBuffer's pickled state: its data only (see the module docstring)."""
    self.__dict__.pop('statistics_methods', None)  # mmengine's own __getstate__ stores it on the instance
    return dict(self.__dict__)


def _mmengine_globals():
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state
    return [HistoryBuffer]


MMENGINE_SAFE_GLOBALS = None


def allow_mmengine_checkpoints():
    """Allow-list the classes found in mmengine checkpoints (idempotent); returns the list."""
    global MMENGINE_SAFE_GLOBALS
    if MMENGINE_SAFE_GLOBALS is None:
        MMENGINE_SAFE_GLOBALS = _mmengine_globals() + _numpy_globals()
        torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
    return MMENGINE_SAFE_GLOBALS
