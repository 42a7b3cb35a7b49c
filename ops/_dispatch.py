"""The one dispatch rule for every zoo operator.

Triton kernels run when all of these hold: Triton is importable, the tensors are on CUDA, the
code is not being scripted or exported (ONNX / torch.export need the plain-PyTorch reference,
which every exporter understands), and ``ZOO_OPS`` is not ``reference``. Otherwise the
reference runs: CPU, ONNX export, TorchScript, and ``ZOO_OPS=reference`` everywhere.

``ZOO_OPS`` is read at call time, so a benchmark or test can flip it inside one process.
"""
import contextlib
import importlib.util
import os
from typing import Iterator, Optional

import torch

__all__ = ['HAS_TRITON', 'ops_mode', 'forced_ops_mode', 'use_triton', 'is_exporting', 'in_graph_capture']

HAS_TRITON = importlib.util.find_spec('triton') is not None
_MODES = ('auto', 'reference', 'triton')


def ops_mode() -> str:
    mode = os.environ.get('ZOO_OPS', 'auto').strip().lower() or 'auto'
    if mode not in _MODES:
        raise ValueError(f'ZOO_OPS={mode!r} is not one of {_MODES}')
    return mode


@contextlib.contextmanager
def forced_ops_mode(mode: Optional[str]) -> Iterator[None]:
    """Run a block with ``ZOO_OPS=mode`` (``None``: leave it as it is), restoring the previous value after."""
    old = os.environ.get('ZOO_OPS')
    if mode is not None:
        os.environ['ZOO_OPS'] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop('ZOO_OPS', None)
        else:
            os.environ['ZOO_OPS'] = old


def is_exporting() -> bool:
    """True while torch.jit scripting/tracing, ONNX export or torch.export trace the model."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler is not None and hasattr(compiler, 'is_exporting') and compiler.is_exporting())


def in_graph_capture() -> bool:
    """Exporting, scripting, tracing or compiling: sizes may be symbolic and Python-side state is not seen.

    Model code checks this before a size-dependent Python branch (which would bake the example's size
    into an exported graph without a guard) or a Python-side cache (shape-keyed tables, folded weights):
    under capture it computes in the graph instead.
    """
    return is_exporting() or torch.compiler.is_compiling()


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether the Triton path should run for these inputs (see the module docstring).

    ``ZOO_OPS=triton`` turns a silent fall-back into an error where CUDA tensors cannot take the
    Triton path (Triton missing); CPU tensors always take the reference.
    """
    if not tensors[0].is_cuda:  # checked first: this runs once per op call on the CPU hot path
        ops_mode()  # still reject a misspelt ZOO_OPS
        return False
    mode = ops_mode()
    if mode == 'triton' and not HAS_TRITON:
        raise RuntimeError('ZOO_OPS=triton, but the `triton` package is not installed')
    if mode == 'reference' or not HAS_TRITON or is_exporting():
        return False
    return all(t.is_cuda for t in tensors if t is not None)
