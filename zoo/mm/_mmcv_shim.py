"""Make ``mmcv.ops`` importable on mmcv-lite (no compiled ops), without ever touching a full mmcv.

Why: mmdet 3.3 / mmseg 1.2 import a few ``mmcv.ops`` names at module import time (``batched_nms``,
``roi_align``, ``point_sample``, ...). mmcv-lite ships ``mmcv/ops/*.py`` but not the compiled
``mmcv._ext`` they load, so ``import mmdet.models`` fails, and no pre-built full mmcv exists on PyPI
for current torch (building it takes most of an hour; see ../shared/SETUP.md).

What :func:`install` does, and when:

* Nothing, when mmcv is not installed, when ``mmcv._ext`` exists (full mmcv: used untouched), when
  ``mmcv.ops`` was already imported, or when the environment sets ``ZOO_MMCV_OPS_FALLBACK=0``.
* Otherwise it puts one finder, :class:`MmcvOpsFallbackFinder`, at the front of ``sys.meta_path``.
  It answers only imports of ``mmcv.ops`` and ``mmcv.ops.<submodule>``:

  - ``mmcv.ops.nms`` / ``roi_align`` / ``roi_pool`` / ``focal_loss``: :mod:`zoo.mm.mmcv_ops`
    (torchvision / PyTorch implementations with mmcv's signatures);
  - mmcv's own submodules that need no compiled code (``point_sample``, ``merge_cells``,
    ``cc_attention``, ``corner_pool``, ...): mmcv's real files, unchanged;
  - every other submodule: a module whose every public name is an "unavailable op" placeholder;
  - ``mmcv.ops`` itself: a lazy module resolving each name the real ``mmcv/ops/__init__.py`` exports
    (read with ``ast``, never executed) from the submodule that defines it.

  Importing any name always works (so mmdet/mmseg import); *using* an op that is not supplied
  (calling it, instantiating it, building it from a config) raises :class:`MmcvOpUnavailable`
  naming the op and how to get it. ``isinstance(x, placeholder)`` is simply False.

:func:`status` reports which mode is active. The fallback is process-wide (it is an import hook);
it is installed by ``import zoo.mm`` (what ``custom_imports=dict(imports=['zoo.mm'])`` runs), which
must happen before ``mmdet.models`` / ``mmseg.models`` are imported.
"""
import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pkgutil
import sys
import types
from typing import Dict, Optional

__all__ = ['install', 'status', 'is_placeholder', 'MmcvOpUnavailable', 'MmcvOpsFallbackFinder', 'SUPPLIED_SUBMODULES']

ENV_SWITCH = 'ZOO_MMCV_OPS_FALLBACK'
_PKG = 'mmcv.ops'

# mmcv.ops submodule -> names zoo.mm.mmcv_ops supplies for it
SUPPLIED_SUBMODULES: Dict[str, tuple] = {
    'nms': ('nms', 'batched_nms', 'soft_nms'),
    'roi_align': ('roi_align', 'RoIAlign'),
    'roi_pool': ('roi_pool', 'RoIPool'),
    'focal_loss': ('sigmoid_focal_loss', 'SigmoidFocalLoss'),
}

# registry names that the compiled mmcv.ops modules register in mmengine's MODELS; placeholders take
# them so a config asking for e.g. conv_cfg=dict(type='DCNv2') gets the clear error, not "not found"
_REGISTERED_NAMES = {
    'DCN': 'deform_conv', 'DCNv2': 'modulated_deform_conv', 'MMSyncBN': 'sync_bn', 'carafe': 'carafe',
    'SAC': 'saconv', 'MultiScaleDeformableAttention': 'multi_scale_deform_attn',
}

_state = {'mode': None}


class MmcvOpUnavailable(NotImplementedError):
    """An ``mmcv.ops`` operator that needs mmcv's compiled extension, which this install lacks."""


def _unavailable_message(qualname: str) -> str:
    supplied = ', '.join(n for names in SUPPLIED_SUBMODULES.values() for n in names if n != 'soft_nms')
    return (f'{qualname} needs mmcv\'s compiled ops (mmcv._ext), but only mmcv-lite is installed. '
            f'zoo.mm supplies just: {supplied}, point_sample and mmcv\'s other pure-PyTorch ops. '
            'To use this op install full mmcv instead of mmcv-lite (pip uninstall mmcv-lite; then '
            '`mim install "mmcv>=2.0.0rc4,<2.2.0"` where a wheel exists for your torch/CUDA, or build mmcv 2.1.0 '
            'from source), or pick a config that does not use it.')


def _placeholder(name: str, module: str):
    """A class standing for an unavailable op: importable, subclassable, fails with a clear error when used."""
    qualname = f'{module}.{name}'

    def __new__(cls, *args, **kwargs):
        raise MmcvOpUnavailable(_unavailable_message(qualname))

    return type(name, (), {'__new__': __new__, '__module__': module, '__zoo_unavailable__': True,
                           '__doc__': f'Unavailable: {qualname} needs full mmcv (zoo.mm mmcv-lite fallback).'})


def _is_placeholder(obj) -> bool:
    """True for an unavailable-op placeholder class (or placeholder module)."""
    return getattr(obj, '__zoo_unavailable__', False) is True


def _placeholder_getattr(module_name: str, cache: dict):
    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        if name not in cache:
            cache[name] = _placeholder(name, module_name)
        return cache[name]
    return __getattr__


def _real_ops_dir() -> Optional[str]:
    spec = importlib.util.find_spec('mmcv')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], 'ops')
    return path if os.path.isdir(path) else None


def _exported_names(ops_dir: str) -> Dict[str, tuple]:
    """name -> (submodule, original name) for every ``from .sub import name [as alias]`` in mmcv/ops/__init__.py."""
    with open(os.path.join(ops_dir, '__init__.py'), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module.split('.')[0], alias.name)
    return names


class _SuppliedLoader(importlib.abc.Loader):
    """``mmcv.ops.<sub>`` backed by zoo.mm.mmcv_ops; names it does not supply are placeholders."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from . import mmcv_ops
        sub = module.__name__.rpartition('.')[2]
        for name in SUPPLIED_SUBMODULES[sub]:
            setattr(module, name, getattr(mmcv_ops, name))
        module.__getattr__ = _placeholder_getattr(module.__name__, {})


class _RealOrPlaceholderLoader(importlib.abc.Loader):
    """mmcv's own submodule file when it runs without compiled code; else a placeholder module."""

    def __init__(self, real_spec):
        self.real_spec = real_spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if self.real_spec is not None:
            try:
                self.real_spec.loader.exec_module(module)
                return
            except ModuleNotFoundError as e:
                if e.name != 'mmcv._ext':
                    raise
            # drop what the aborted execution defined before it reached the compiled import
            for key in [k for k in vars(module) if not k.startswith('__')]:
                delattr(module, key)
        module.__zoo_unavailable__ = True
        module.__getattr__ = _placeholder_getattr(module.__name__, {})


class _OpsPackage(types.ModuleType):
    """The ``mmcv.ops`` module object: an exported function named like its submodule (``nms``,
    ``roi_align``) keeps winning over the submodule, as in the real package, where ``__init__`` binds
    the function after importing the submodule."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in self.__dict__.get('_exported', ()):
            return  # the import system binding the submodule; it stays reachable through sys.modules
        super().__setattr__(name, value)


class _PackageLoader(importlib.abc.Loader):
    """``mmcv.ops``: each exported name resolves lazily from the submodule that defines it."""

    def __init__(self, ops_dir: str):
        self.ops_dir = ops_dir

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exported = _exported_names(self.ops_dir)
        submodules = {m.name for m in pkgutil.iter_modules([self.ops_dir])}
        module.__path__ = [self.ops_dir]
        module.__zoo_fallback__ = True
        module.__all__ = sorted(exported)

        def __getattr__(name):
            if name.startswith('__'):
                raise AttributeError(name)
            if name in exported:
                sub, original = exported[name]
                value = getattr(importlib.import_module(f'{_PKG}.{sub}'), original)
                object.__setattr__(module, name, value)
                return value
            if name in submodules:
                return importlib.import_module(f'{_PKG}.{name}')
            raise AttributeError(f"module 'mmcv.ops' has no attribute {name!r}")

        module.__getattr__ = __getattr__
        module._exported = exported
        module.__class__ = _OpsPackage
        _register_placeholders()


def _register_placeholders():
    try:
        from mmengine.registry import MODELS
    except ImportError:
        return
    for name, sub in _REGISTERED_NAMES.items():
        if name not in MODELS.module_dict:
            MODELS.register_module(name=name, module=_placeholder(name, f'{_PKG}.{sub}'))


class MmcvOpsFallbackFinder(importlib.abc.MetaPathFinder):
    """Answers ``mmcv.ops`` and ``mmcv.ops.*`` imports (see module docstring); nothing else."""

    def __init__(self, ops_dir: str):
        self.ops_dir = ops_dir

    def find_spec(self, fullname, path=None, target=None):
        if fullname == _PKG:
            return importlib.util.spec_from_loader(
                fullname, _PackageLoader(self.ops_dir), origin='zoo.mm mmcv-lite fallback', is_package=True)
        if not fullname.startswith(_PKG + '.'):
            return None
        sub = fullname[len(_PKG) + 1:]
        if sub in SUPPLIED_SUBMODULES:
            return importlib.util.spec_from_loader(fullname, _SuppliedLoader(), origin='zoo.mm.mmcv_ops')
        real = importlib.machinery.PathFinder.find_spec(fullname, [self.ops_dir]) if '.' not in sub else None
        spec = importlib.util.spec_from_loader(fullname, _RealOrPlaceholderLoader(real),
                                               origin=real.origin if real else 'zoo.mm placeholder')
        if real is not None:
            spec.has_location = True
        return spec


def _full_mmcv_installed() -> bool:
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except (ImportError, ValueError):
        return False


def install() -> str:
    """Install the fallback if (and only if) it is needed; returns the mode (see :func:`status`)."""
    if _state['mode'] is not None:
        return _state['mode']
    if os.environ.get(ENV_SWITCH, '1').strip().lower() in ('0', 'false', 'no', 'off'):
        mode = 'disabled'
    elif importlib.util.find_spec('mmcv') is None:
        mode = 'no-mmcv'
    elif _full_mmcv_installed():
        mode = 'full-mmcv'
    elif _PKG in sys.modules:
        mode = 'mmcv.ops-already-imported'
    else:
        ops_dir = _real_ops_dir()
        if ops_dir is None:
            mode = 'no-mmcv'
        else:
            sys.meta_path.insert(0, MmcvOpsFallbackFinder(ops_dir))
            mode = 'fallback'
    _state['mode'] = mode
    return mode


def status() -> Optional[str]:
    """``'fallback'`` (zoo supplies mmcv.ops), ``'full-mmcv'`` (compiled mmcv, untouched), ``'disabled'``
    ($ZOO_MMCV_OPS_FALLBACK=0), ``'no-mmcv'``, ``'mmcv.ops-already-imported'``, or None before install()."""
    return _state['mode']


is_placeholder = _is_placeholder
