"""The one dispatch rule for every zoo operator, and the one dtype rule of the fused kernels.

Each op call takes one of three paths:

* ``triton``: the fused Triton kernels (forward and backward), for CUDA tensors;
* ``torch``: PyTorch's own fused kernels where the op has them (attention: ``F.scaled_dot_product_attention`` at
  every size, i.e. flash / memory-efficient / cuDNN); for the other ops this is the reference, which is already
  built from PyTorch's kernels (matmuls, ``unfold``/``fold``, ``index_select``);
* ``reference``: the readable pure-PyTorch specification (the CPU, ONNX and TorchScript path).

Rule: CPU tensors, scripting/tracing and ONNX / torch.export always take the reference. CUDA tensors in the
default mode (``ZOO_OPS`` unset or ``auto``) take the path that was measured fastest for the call's shape, dtype
and whether a gradient is needed: the crossover table in :mod:`._dispatch_table` (measured on a GPU; its
docstring says when, where and with which command). ``ZOO_OPS=triton`` / ``torch`` / ``reference`` force a path
on CUDA, for tests and benchmarks. ``ZOO_OPS`` is read at call time, so a benchmark or test can flip it inside one
process (:func:`forced_ops_mode`).

Dtypes: the Triton kernels compute in one dtype per call (:func:`compute_dtype`): the autocast dtype when
autocast is on for the tensors' device, as ``F.scaled_dot_product_attention`` does, otherwise the promotion of
the floating inputs. Every op's Triton entry casts its inputs to it, so mixed fp32 / bf16 inputs under autocast
never reach a ``tl.dot`` (which refuses mixed operands on a GPU; the CPU interpreter does not notice).
"""
import contextlib
import importlib.util
import os
from typing import Callable, Iterator, Optional

import torch

__all__ = [
    'HAS_TRITON', 'PATHS', 'ops_mode', 'forced_ops_mode', 'use_triton', 'choose_path', 'is_exporting',
    'in_graph_capture', 'compute_dtype', 'check_triton_inputs', 'needs_grad',
]

HAS_TRITON = importlib.util.find_spec('triton') is not None
PATHS = ('triton', 'torch', 'reference')
_MODES = ('auto',) + PATHS


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


def needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd will record this call (a training step rather than inference)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def choose_path(op: str, tensors, rule: Optional[Callable[..., str]] = None) -> str:
    """The path ('triton', 'torch' or 'reference') for one call of ``op`` on ``tensors`` (see the module docstring).

    ``rule`` is the op's entry of the crossover table: called with the tensors only for CUDA calls in the
    default mode, it returns the measured-fastest path for their shapes. ``ZOO_OPS=triton`` turns a silent
    fall-back into an error where CUDA tensors cannot take the Triton path (Triton missing).
    """
    first = tensors[0]
    if not first.is_cuda:  # checked first: this runs once per op call on the CPU hot path
        ops_mode()  # still reject a misspelt ZOO_OPS
        return 'reference'
    mode = ops_mode()
    if mode == 'triton' and not HAS_TRITON:
        raise RuntimeError('ZOO_OPS=triton, but the `triton` package is not installed')
    if mode == 'reference' or is_exporting() or not all(t.is_cuda for t in tensors if t is not None):
        return 'reference'
    if mode != 'auto':
        return mode
    path = rule(*tensors) if rule is not None else 'triton'
    if path == 'triton' and not HAS_TRITON:
        return 'torch'
    return path


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether the Triton path runs for these inputs by the default rule (no crossover table)."""
    return choose_path('', tensors) == 'triton'


def compute_dtype(*tensors: Optional[torch.Tensor]) -> torch.dtype:
    """The one dtype a fused kernel computes in for these inputs (see the module docstring)."""
    first = tensors[0]
    device_type = first.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    dtype = first.dtype
    for t in tensors[1:]:
        if t is not None and t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def check_triton_inputs(op: str, *tensors: Optional[torch.Tensor]) -> None:
    """A clear error before a Triton launch that cannot work (instead of a pointer error deep inside Triton)."""
    if not HAS_TRITON:
        raise RuntimeError(f'zoo.ops.{op}_triton needs the `triton` package')
    on_cpu = [t for t in tensors if t is not None and not t.is_cuda]
    if on_cpu and os.environ.get('TRITON_INTERPRET') != '1':
        raise ValueError(f'zoo.ops.{op}_triton: the Triton kernels need CUDA tensors (got a {on_cpu[0].device} '
                         'tensor); CPU tensors run them only in the interpreter (TRITON_INTERPRET=1 set before '
                         'import). zoo.ops.' + op + '() picks the reference on CPU by itself.')
