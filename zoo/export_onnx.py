"""ONNX export of any zoo model, checked in ONNX Runtime against PyTorch.

    zoo export efficientvit_m0 --img-size 224 224 --output m0.onnx
    python tools/export_onnx.py davit_tiny --checkpoint davit_tiny.safetensors --dynamic-size
    zoo export volo_d1_224 --features --output volo_features.onnx
    zoo export volo_d1_224 --model-kwargs dynamic_img_size=True --dynamic-size

The model is built with the pure-PyTorch reference ops (``ZOO_OPS=reference``; the dispatch in
``zoo.ops._dispatch`` also picks them whenever an exporter traces) and exported in eval mode with
a dynamic batch axis, plus dynamic height / width with ``--dynamic-size`` where the architecture
allows it. The file is then checked: ``onnx.checker`` (full check), and ONNX Runtime (CPU) against
PyTorch on fresh random inputs at the export size and batch and, when the export is dynamic, at a
second batch (and size). The maximum absolute difference and the ORT vs PyTorch latency are printed;
the exit status is non-zero when export or a check fails.

Opset 19 by default: VOLO's ``F.fold`` needs ONNX ``Col2Im`` (opset 18) and LITv2's deformable
convolution (torchvision ``deform_conv2d``) needs ``DeformConv`` (opset 19); ONNX Runtime runs both.

Exporter: the dynamo-based ``torch.onnx.export(..., dynamo=True)`` is the default
because it is the one that exports every family on the installed torch: it maps ``F.fold``
(VOLO's outlook attention) to ONNX ``Col2Im``, which the TorchScript exporter cannot, and it is
the exporter torch maintains (the TorchScript one is deprecated). It is slower (tens of seconds
to minutes per model). ``--exporter torchscript`` selects the older exporter, which is several
times faster where it works.

The output file is written atomically: the ONNX file (and its external-data file, above 2 GB) is
written to a temporary folder next to it, checked, and only then moved into place, so an existing
file is never replaced by a half-written or failing one. A file that fails the check is kept as
``<output>.failed.onnx`` for inspection.
"""
import argparse
import contextlib
import copy
import inspect
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['ExportError', 'CheckResult', 'build_model', 'export_model', 'check_onnx', 'ort_session', 'export', 'main']

EXPORTERS = ('dynamo', 'torchscript')
DEFAULT_OPSET = 19
# the opsets each exporter writes as asked: the dynamo exporter's op library starts at 18 (below it, torch
# silently writes 18 or more), the TorchScript exporter stops at 20
OPSET_RANGE = {'dynamo': (18, 23), 'torchscript': (7, 20)}
# fp32 passes when max |ONNX - PyTorch| <= FP32_RTOL * max |PyTorch output| (+ FP32_ATOL_FLOOR for outputs ~0):
# relative to the output's scale, so a random-init model whose logits are ~1e-5 is held to ~1e-9 and a wrong
# model (another random init, all zeros: a difference the size of the output itself) fails
FP32_RTOL = 1e-4
FP32_ATOL_FLOOR = 1e-7
ONNX_PACKAGES = ('onnx', 'onnxruntime', 'onnxscript')
# fp16 files are compared with the fp32 PyTorch model: half precision keeps ~3 significant digits,
# and the error grows with depth, so the bound is relative to the output's magnitude
FP16_RTOL = 2e-2


class ExportError(RuntimeError):
    """A model or option that cannot be exported; the message names the module and op where known."""


def require_onnx_packages(exporter: str = 'dynamo', check: bool = True) -> None:
    """A clear error naming the extra to install when the ONNX packages this export needs are missing."""
    import importlib.util

    from zoo.errors import UserError
    needed = ['onnx'] + (['onnxscript'] if exporter == 'dynamo' else []) + (['onnxruntime'] if check else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f'ONNX export needs {", ".join(missing)}, not installed: pip install "zoo-backbones[onnx]"')


def check_opset(opset: int, exporter: str) -> None:
    """Refuse an opset the exporter would not write as asked (before anything is built or written)."""
    from zoo.errors import UserError
    low, high = OPSET_RANGE[exporter]
    if not low <= opset <= high:
        raise UserError(f'--opset {opset}: the {exporter} exporter writes opsets {low}..{high}'
                        + (' (--exporter torchscript writes 7..20)' if exporter == 'dynamo' and opset < low else ''))


def file_opset(path: str) -> Optional[int]:
    """The default-domain ONNX opset a file declares."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), None)


@dataclass
class CheckResult:
    ok: bool
    max_abs_diff: float
    tolerance: float
    cases: List[Tuple[Tuple[int, int, int], float]] = field(default_factory=list)  # ((B, H, W), max abs diff)
    ort_ms: Optional[float] = None
    torch_ms: Optional[float] = None
    message: str = ''


# ----------------------------------------------------------------------------------------------
# building


def reference_ops():
    """Force the pure-PyTorch reference ops (what every exporter and ONNX Runtime understand)."""
    from zoo.ops._dispatch import forced_ops_mode
    return forced_ops_mode('reference')


def resolve_model_name(name: str) -> str:
    """A zoo model (plain or ``zoo_`` name) first; any other timm model name is accepted as well."""
    import timm

    import zoo
    try:
        return zoo.resolve_model_name(name)
    except ValueError:
        if timm.is_model(name):
            return name
        raise


def build_model(
        name: str,
        checkpoint: Optional[str] = None,
        features: bool = False,
        out_indices: Optional[Sequence[int]] = None,
        num_classes: Optional[int] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """The model in eval mode with reference ops; ``checkpoint`` loads through its ``checkpoint_filter_fn``;
    ``model_kwargs`` go to the model's constructor (e.g. VOLO's ``dynamic_img_size=True``)."""
    import timm
    kwargs = dict(model_kwargs or {}, exportable=True)
    if checkpoint is not None:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f'--checkpoint {checkpoint!r}: no such file')
        overlay = _trained_cfg(name, checkpoint, num_classes)
        num_classes = overlay.get('num_classes', num_classes)
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(overlay, file=os.path.abspath(checkpoint)))
    if features:
        kwargs['features_only'] = True
        if out_indices is not None:
            kwargs['out_indices'] = tuple(out_indices)
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    from zoo.errors import reading_checkpoint
    with reference_ops(), reading_checkpoint(checkpoint or name):  # timm models' files too: one line naming it
        model = timm.create_model(resolve_model_name(name), **kwargs)
    return model.eval()


def _trained_cfg(name: str, checkpoint: str, num_classes: Optional[int]) -> Dict[str, Any]:
    """pretrained_cfg entries from a ``zoo train`` checkpoint's metadata: its classifier size (so timm keeps the
    head instead of dropping it as a size mismatch), class names and training data config (the export size and
    what ``zoo predict`` reads back from the ONNX file). {} for other checkpoints."""
    from zoo.validate import checkpoint_metadata
    meta = checkpoint_metadata(checkpoint)
    if meta.get('zoo_arch') and resolve_model_name(meta['zoo_arch']) != resolve_model_name(name):
        raise ValueError(f'{checkpoint!r} is a checkpoint of {meta["zoo_arch"]}, not of {name}')
    if not meta.get('num_classes') or (num_classes is not None and num_classes != meta['num_classes']):
        return {}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in (meta.get('data_config') or {}).items()
           if k in ('input_size', 'interpolation', 'mean', 'std', 'crop_pct', 'crop_mode')}
    return dict(cfg, num_classes=meta['num_classes'], label_names=meta.get('classes'))


def default_input_size(model: nn.Module) -> Tuple[int, int]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return tuple(cfg.get('input_size', (3, 224, 224))[1:])


def output_names(model: nn.Module, features: bool) -> List[str]:
    """``logits`` for a classifier; one name per feature map (its module, e.g. ``stages_1``) for features."""
    if not features:
        return ['logits']
    names = [re.sub(r'[^0-9A-Za-z_]', '_', n) for n in model.feature_info.module_name()]
    return names if len(set(names)) == len(names) else [f'feature{i}' for i in range(len(names))]


# ----------------------------------------------------------------------------------------------
# locating what failed


_OP_PATTERNS = (
    r"(?:aten|prims|zoo|torchvision|onnx)::\w+",                 # TorchScript: 'aten::col2im'
    r"(?:torch\.ops\.)?(?:aten|prims|zoo|torchvision)\.\w+(?:\.\w+)?",  # FX: aten.col2im.default
)


def find_op_name(message: str) -> Optional[str]:
    m = re.search(r'Occurred when translating (\w+)', message)  # the TorchScript exporter's symbolic functions
    if m:
        return f'aten::{m.group(1)}'
    for pattern in _OP_PATTERNS:
        m = re.search(pattern, message)
        if m:
            return m.group(0).replace('torch.ops.', '')
    return None


def locate_op(model: nn.Module, example: torch.Tensor, op_name: str) -> Optional[Tuple[str, str]]:
    """(module path, class name) of the innermost module whose forward calls ``op_name`` (e.g. ``aten::col2im``).

    Runs one forward pass with a dispatch-mode spy and module hooks; only used after a failure.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    target = re.split(r'::|\.', op_name.replace('torch.ops.', ''))
    target = target[1] if len(target) > 1 else target[0]
    stack: List[str] = []
    found: List[Tuple[str, str]] = []
    modules = dict(model.named_modules())

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__.lstrip('_')
            if not found and name == target.lstrip('_') and stack:
                found.append((stack[-1], type(modules[stack[-1]]).__name__))
            return func(*args, **(kwargs or {}))

    def enter(path):
        def hook(module, args):
            stack.append(path)
        return hook

    def leave(module, args, output):
        stack.pop()  # returns None: the output is left unchanged

    handles = []
    for path, mod in modules.items():
        if path:
            handles += [mod.register_forward_pre_hook(enter(path)), mod.register_forward_hook(leave)]
    try:
        with torch.no_grad(), Spy(), reference_ops():
            model(example)
    except Exception:  # noqa: BLE001  (best effort: only enriches an error message)
        pass
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def _first_line(e: BaseException, limit: int = 400) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # torch.onnx wraps the cause: prefer the line that names an op
    for line in lines:
        if find_op_name(line):
            return line[:limit]
    return lines[0][:limit] if lines else type(e).__name__


def _root_cause(e: BaseException) -> BaseException:
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return e


def module_in_traceback(e: BaseException, model: nn.Module) -> Optional[Tuple[str, str]]:
    """(module path, 'Class.method (file:line)') of the innermost model frame in the traceback, if any."""
    paths = {id(m): p for p, m in model.named_modules() if p}
    found = None
    for cause in (e, _root_cause(e)):
        for frame, lineno in traceback.walk_tb(cause.__traceback__):
            owner = frame.f_locals.get('self')
            if id(owner) in paths:
                code = frame.f_code
                found = (paths[id(owner)], f'{type(owner).__name__}.{code.co_name} '
                                           f'({os.path.basename(code.co_filename)}:{lineno})')
    return found


def explain_failure(e: BaseException, model: nn.Module, example: torch.Tensor, exporter: str, opset: int) -> str:
    """One paragraph naming the module and op that could not be exported, and what to try."""
    texts = [str(e), str(_root_cause(e))]
    op = next((o for o in map(find_op_name, texts) if o), None)
    where = locate_op(model, example[:1], op) if op else None
    where = where or module_in_traceback(e, model)
    what = f'op {op}' if op else 'an op'
    module = f'module {where[0]!r} ({where[1]})' if where else 'the model'
    msg = f'{exporter} exporter (opset {opset}) could not export {what} in {module}: {_first_line(_root_cause(e))}'
    if exporter == 'torchscript':
        msg += ' -- try the default --exporter dynamo'
    return msg


# ----------------------------------------------------------------------------------------------
# exporting


def _dynamic_axes(dynamic_size: bool) -> Dict[int, str]:
    return {0: 'batch', 2: 'height', 3: 'width'} if dynamic_size else {0: 'batch'}


# onnxscript (0.7.2) matches multi-output rewrite patterns by rescanning every graph node for each candidate
# node: O(candidates x nodes). SlicesSplit (two Slices of one tensor -> one Split), the only such default rule,
# took 85% of the optimiser's time on OverLoCK-XT (minutes on A2Mamba with dynamic sizes) and removed no node:
# the optimised graph has the same 1,623 nodes without it.
_QUADRATIC_REWRITES = frozenset({'SlicesSplit'})


@contextlib.contextmanager
def _without_quadratic_rewrites():
    """Run onnxscript's default optimiser without the rewrite rules listed in ``_QUADRATIC_REWRITES``."""
    try:
        from onnxscript import rewriter
        rules = rewriter._DEFAULT_REWRITE_RULES
    except (ImportError, AttributeError):  # another onnxscript layout: optimise with whatever it has
        yield
        return
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in rules if getattr(r, 'name', None) not in _QUADRATIC_REWRITES)
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


def export_model(
        model: nn.Module,
        path: str,
        img_size: Tuple[int, int],
        in_chans: int = 3,
        opset: int = DEFAULT_OPSET,
        dynamic_size: bool = False,
        fp16: bool = False,
        exporter: str = 'dynamo',
        names: Optional[List[str]] = None,
) -> None:
    """Export ``model`` (eval mode) to ``path`` with a dynamic batch axis; raises ExportError naming the failure."""
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    model = model.eval()
    dtype = torch.float16 if fp16 else torch.float32
    fp32_model = model
    if fp16:
        # a half copy: converting the caller's model in place and back would leave dtype-keyed caches stale
        model = copy.deepcopy(model).half()
    # a batch-1 example makes torch.export specialise the batch dim to 1: export with batch 2
    example = torch.randn(2, in_chans, *img_size, dtype=dtype)
    names = names or ['logits']
    axes = _dynamic_axes(dynamic_size)
    try:
        with reference_ops(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with torch.no_grad():
                model(example)  # freezes any lazy state (padding caches) before tracing
            # traced with grad mode on (as torch.export expects): inference-only caches stay out of the graph
            if exporter == 'dynamo':
                program = torch.onnx.export(
                    model, (example,), None, dynamo=True, opset_version=opset, input_names=['input'],
                    output_names=names, dynamic_shapes=(axes,), optimize=False, verbose=False)
                with _without_quadratic_rewrites():
                    program.optimize()  # what optimize=True runs: onnxscript's constant folding, rewrites, fusions
                program.save(path, external_data=_needs_external_data(model))
            else:
                dyn = {'input': axes, **{n: {0: 'batch'} for n in names}}
                torch.onnx.export(
                    model, (example,), path, dynamo=False, opset_version=opset, input_names=['input'],
                    output_names=names, dynamic_axes=dyn, do_constant_folding=True)
        written = file_opset(path)
        if written != opset:
            raise ExportError(f'the {exporter} exporter wrote opset {written}, not the requested {opset}; '
                              f'use an opset in {OPSET_RANGE[exporter]}')
        fixed = static_input_axes(path, axes)
        if fixed:
            raise ExportError(
                f'{type(model).__name__}: input axes {[axes[i] for i in fixed]} cannot be dynamic for this model: the '
                'exporter fixed them to the example size (the model branches on them)'
                + ('; export without --dynamic-size' if dynamic_size else ''))
    except Exception as e:  # noqa: BLE001  (re-raised as one readable message, cause chained)
        if isinstance(e, ExportError):
            raise
        if dynamic_size and _is_shape_constraint_error(e):
            raise ExportError(
                f'{type(model).__name__}: height/width cannot be dynamic for this model ({_first_line(e)}). '
                'The architecture ties a shape to the input size; export without --dynamic-size.') from e
        raise ExportError(explain_failure(e, fp32_model, example.float(), exporter, opset)) from e


def static_input_axes(path: str, axes: Dict[int, str]) -> List[int]:
    """The axes asked to be dynamic that the exporter fixed anyway (it specialises what the model branches on)."""
    import onnx
    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [i for i in axes if dims[i].HasField('dim_value')]


def _needs_external_data(model: nn.Module) -> bool:
    return sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8 * 2 ** 30


def _is_shape_constraint_error(e: BaseException) -> bool:
    text = f'{e}\n{_root_cause(e)}'
    return any(s in text for s in ('Constraints violated', 'specialized', 'ConstraintViolation', 'guard'))


# ----------------------------------------------------------------------------------------------
# checking


def _as_list(out) -> List[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _median_ms(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def ort_session(path: str):
    """A CPU ONNX Runtime session with all graph optimisations and torch's intra-op thread count (so latency
    comparisons with PyTorch eager use the same cores)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])


def check_onnx(
        path: str,
        model: nn.Module,
        img_size: Tuple[int, int],
        batch: int = 1,
        in_chans: int = 3,
        dynamic_size: bool = False,
        fp16: bool = False,
        atol: Optional[float] = None,
        runs: int = 10,
        seed: int = 0,
) -> CheckResult:
    """``onnx.checker`` full check, then ONNX Runtime (CPU) vs PyTorch fp32 on fresh random inputs.

    Cases: (batch, export size), and for the always-dynamic batch a second batch (3, or 1 when
    ``batch`` is 3), at a second size too when ``dynamic_size``. fp32 passes at max abs diff <= ``atol``
    when given, else <= FP32_RTOL * max |output| + FP32_ATOL_FLOOR (relative to the output's scale, so
    the check fails for a wrong model however small a random-init model's outputs are); fp16 at
    <= FP16_RTOL * max(1, max |output|). Latency: median of ``runs`` at the export batch and size, ORT
    and PyTorch eager with the same thread count.
    """
    import numpy as np
    import onnx

    onnx.checker.check_model(path, full_check=True)
    session = ort_session(path)
    input_name = session.get_inputs()[0].name
    np_dtype = np.float16 if fp16 else np.float32

    H, W = img_size
    second_batch = 1 if batch == 3 else 3
    cases = [(batch, H, W), (second_batch, H + 32, W + 64) if dynamic_size else (second_batch, H, W)]
    gen = torch.Generator().manual_seed(seed)
    model = model.eval().float()
    result = CheckResult(ok=True, max_abs_diff=0., tolerance=atol if atol is not None else FP32_ATOL_FLOOR)
    for b, h, w in cases:
        x = torch.randn(b, in_chans, h, w, generator=gen)
        with torch.no_grad(), reference_ops():
            ref = [t.float().numpy() for t in _as_list(model(x))]
        got = session.run(None, {input_name: x.numpy().astype(np_dtype)})
        if len(got) != len(ref):
            raise ExportError(f'ONNX model has {len(got)} outputs, PyTorch {len(ref)}')
        diff = 0.
        for r, g in zip(ref, got):
            if r.shape != g.shape:
                raise ExportError(
                    f'output shape {g.shape} in ONNX Runtime vs {r.shape} in PyTorch at input {(b, h, w)}')
            diff = max(diff, float(np.abs(r - g.astype(np.float32)).max()))
        scale = max(float(np.abs(r).max()) for r in ref)
        tol = atol if atol is not None else (
            FP16_RTOL * max(1., scale) if fp16 else FP32_RTOL * scale + FP32_ATOL_FLOOR)
        result.cases.append(((b, h, w), diff))
        result.max_abs_diff = max(result.max_abs_diff, diff)
        result.tolerance = tol
        if not diff <= tol:  # also catches NaN
            result.ok = False
            result.message = f'max abs diff {diff:.3g} > {tol:.3g} at input (B, H, W) = {(b, h, w)}'

    if runs > 0:
        x = torch.randn(batch, in_chans, H, W, generator=gen)
        feed = {input_name: x.numpy().astype(np_dtype)}
        result.ort_ms = _median_ms(lambda: session.run(None, feed), runs)
        with torch.no_grad(), reference_ops():
            result.torch_ms = _median_ms(lambda: model(x), runs)
    return result


# ----------------------------------------------------------------------------------------------
# the whole job: build, export to a temp folder, check, move into place


def _publish(tmp_dir: str, output: str) -> None:
    """Move the files of ``tmp_dir`` next to ``output``; the .onnx file last, each with an atomic rename."""
    out_dir = os.path.dirname(os.path.abspath(output))
    files = sorted(os.listdir(tmp_dir), key=lambda f: f == os.path.basename(output))
    for f in files:
        os.replace(os.path.join(tmp_dir, f), os.path.join(out_dir, f))


def export(
        name: str,
        output: str,
        checkpoint: Optional[str] = None,
        img_size: Optional[Tuple[int, int]] = None,
        batch: int = 1,
        opset: int = DEFAULT_OPSET,
        dynamic_size: bool = False,
        fp16: bool = False,
        features: bool = False,
        out_indices: Optional[Sequence[int]] = None,
        exporter: str = 'dynamo',
        check: bool = True,
        atol: Optional[float] = None,
        runs: int = 10,
        log=print,
        model: Optional[nn.Module] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
) -> CheckResult:
    """Build ``name`` (or take the built ``model``), export it to ``output`` and check it. Raises ExportError."""
    require_onnx_packages(exporter, check)
    check_opset(opset, exporter)
    check_output_path(output)
    if model is None:
        model = build_model(name, checkpoint=checkpoint, features=features, out_indices=out_indices,
                            model_kwargs=model_kwargs)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    if dynamic_size and cfg.get('fixed_input_size', False) and not getattr(model, 'dynamic_img_size', False):
        hint = (' (build it with --model-kwargs dynamic_img_size=True)' if 'dynamic_img_size' in
                inspect.signature(type(model).__init__).parameters else '')
        raise ExportError(f'{name}: --dynamic-size is not possible, the model has a fixed input size '
                          f'{tuple(cfg["input_size"][1:])} (pretrained_cfg fixed_input_size=True){hint}')
    img_size = tuple(img_size) if img_size else default_input_size(model)
    in_chans = cfg.get('input_size', (3,))[0]
    names = output_names(model, features)

    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix='.zoo_export_', dir=out_dir)
    tmp_path = os.path.join(tmp_dir, os.path.basename(output))
    try:
        t0 = time.perf_counter()
        export_model(model, tmp_path, img_size, in_chans, opset, dynamic_size, fp16, exporter, names)
        if not features and getattr(model, 'num_classes', 0):  # a classifier: its preprocessing and classes,
            from zoo.predict import onnx_metadata, write_onnx_metadata  # for zoo predict
            write_onnx_metadata(tmp_path, onnx_metadata(model, img_size))
        log(f'exported {name} ({exporter}, opset {opset}, {"fp16" if fp16 else "fp32"}, '
            f'{"features " + ",".join(names) if features else "logits"}) at {img_size[0]}x{img_size[1]}, '
            f'dynamic {"batch/height/width" if dynamic_size else "batch"}, in {time.perf_counter() - t0:.1f} s')
        if not check:
            _publish(tmp_dir, output)
            return CheckResult(ok=True, max_abs_diff=float('nan'), tolerance=float('nan'), message='not checked')
        try:
            result = check_onnx(tmp_path, model, img_size, batch, in_chans, dynamic_size, fp16, atol, runs)
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001  (onnx checker / ONNX Runtime: their message names the node)
            raise ExportError(f'the exported file failed the check ({type(e).__name__}): {_first_line(e, 600)}; '
                              f'{output} was not written') from e
        for (b, h, w), diff in result.cases:
            log(f'  ORT vs PyTorch at (B, H, W) = ({b}, {h}, {w}): max abs diff {diff:.3g}')
        if result.ort_ms is not None:
            log(f'  latency at batch {batch}, {img_size[0]}x{img_size[1]}: ONNX Runtime {result.ort_ms:.2f} ms, '
                f'PyTorch eager {result.torch_ms:.2f} ms (ORT {result.torch_ms / result.ort_ms:.2f}x the speed)')
        if result.ok:
            _publish(tmp_dir, output)
            log(f'wrote {output} (check passed: max abs diff {result.max_abs_diff:.3g} <= {result.tolerance:.3g})')
        else:
            failed = os.path.splitext(output)[0] + '.failed.onnx'
            os.replace(tmp_path, failed)
            log(f'CHECK FAILED: {result.message}; the file was kept as {failed}, {output} was not written')
        return result
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# command line


def check_output_path(output: str) -> None:
    """The output must be a file path in a folder this process can write (checked before a long export)."""
    from zoo.errors import UserError
    if os.path.isdir(output):
        raise UserError(f'--output {output!r} is a folder; give a file path, e.g. {os.path.join(output, "model.onnx")}')
    folder = os.path.dirname(os.path.abspath(output))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f'--output {output!r}: cannot write in {existing!r}')


class _ParseKwargs(argparse.Action):
    """``KEY=VALUE ...`` -> dict, values read as Python literals where they are one (as timm's ParseKwargs, which
    is not imported here: importing timm costs seconds and hundreds of MB before an argument is even checked)."""

    def __call__(self, parser, namespace, values, option_string=None):
        import ast
        kwargs = {}
        for item in values:
            key, sep, value = item.partition('=')
            if not sep or not key:
                parser.error(f'{option_string}: expected KEY=VALUE, got {item!r}')
            try:
                kwargs[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                kwargs[key] = value
        setattr(namespace, self.dest, kwargs)


def parse_args(argv=None):
    from zoo.errors import ArgumentParser
    p = ArgumentParser(prog='zoo export', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='zoo model (plain or zoo_ name); any timm model name also works')
    p.add_argument('--checkpoint', metavar='FILE',
                   help='weights (official, timm or zoo) loaded through the model\'s checkpoint_filter_fn')
    p.add_argument('--img-size', nargs='+', type=int, metavar='H W',
                   help='export size (one value for square); default: the model cfg input_size')
    p.add_argument('--batch', type=int, default=1, help='batch of the check and latency runs (the batch axis is '
                                                        'always dynamic)')
    p.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    p.add_argument('--dynamic-size', action='store_true', help='dynamic height and width too')
    p.add_argument('--fp16', action='store_true', help='export in half precision')
    p.add_argument('--features', action='store_true', help='export the features_only model (one output per level)')
    p.add_argument('--out-indices', nargs='+', type=int, help='feature levels with --features')
    p.add_argument('--model-kwargs', nargs='*', default={}, action=_ParseKwargs, metavar='KEY=VALUE',
                   help='constructor arguments, e.g. dynamic_img_size=True (VOLO: any input size)')
    p.add_argument('--exporter', choices=EXPORTERS, default='dynamo')
    p.add_argument('--output', '-o', metavar='FILE', help='default: MODEL[_features][_fp16].onnx')
    p.add_argument('--no-check', action='store_true', help='skip the onnx checker / ONNX Runtime comparison')
    p.add_argument('--atol', type=float, help=f'max abs diff allowed (default {FP32_RTOL} x max|output| fp32, '
                                              f'{FP16_RTOL} x max(1, max|output|) fp16)')
    p.add_argument('--runs', type=int, default=10, help='timed runs for the latency comparison (0: none)')
    p.add_argument('--threads', type=int, default=None, help='CPU threads for PyTorch and ONNX Runtime')
    args = p.parse_args(argv)
    if args.img_size is not None:
        if len(args.img_size) > 2 or min(args.img_size) < 1:
            p.error('--img-size takes H W (or one value for a square), positive')
        if len(args.img_size) == 1:
            args.img_size = args.img_size * 2
    if args.batch < 1:
        p.error('--batch must be >= 1')
    if args.out_indices and not args.features:
        p.error('--out-indices needs --features')
    if args.output is None:
        base = args.model + ('_features' if args.features else '') + ('_fp16' if args.fp16 else '')
        args.output = base + '.onnx'
    return args


def run(args) -> int:
    # everything checkable is checked before the model is built and the (long) export runs
    require_onnx_packages(args.exporter, not args.no_check)
    check_opset(args.opset, args.exporter)
    check_output_path(args.output)
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'--checkpoint {args.checkpoint!r}: no such file')
    name = resolve_model_name(args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = export(
            name, args.output, checkpoint=args.checkpoint, img_size=args.img_size, batch=args.batch,
            opset=args.opset, dynamic_size=args.dynamic_size, fp16=args.fp16, features=args.features,
            out_indices=args.out_indices, exporter=args.exporter, check=not args.no_check, atol=args.atol,
            runs=args.runs, model_kwargs=args.model_kwargs)
    except ExportError as e:  # an export that failed is a known outcome: one line, no "traceback" hint
        if args.verbose:
            traceback.print_exc()
        print(f'zoo export: error: {e}', file=sys.stderr)
        return 1
    return 0 if result.ok else 1


def main(argv=None) -> int:
    from zoo.errors import run_command
    args = parse_args(argv)
    return run_command('zoo export', lambda: run(args), verbose=args.verbose)


if __name__ == '__main__':
    sys.exit(main())
