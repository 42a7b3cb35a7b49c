"""zoo.mm: zoo backbones in mmdetection 3.x and mmsegmentation 1.x (OpenMMLab) configs.

Use from a config::

    custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='zoo.Backbone', model_name='efficientvit_m4', ...))

Importing this package, in this order:

1. installs the mmcv-lite fallback for ``mmcv.ops`` when (and only when) mmcv's compiled ops are
   missing (:mod:`zoo.mm._mmcv_shim`; a full mmcv is used untouched; ``ZOO_MMCV_OPS_FALLBACK=0``
   turns it off). It must run before ``mmdet.models`` / ``mmseg.models`` are imported, which
   ``custom_imports`` and ``tools/mm_train.py`` guarantee;
2. allow-lists the classes mmengine writes into its checkpoints for torch's safe loading
   (:mod:`zoo.mm.checkpoint`), so resume / test work without disabling ``weights_only``;
3. registers :class:`ZooBackbone` (``zoo.Backbone`` / ``zoo.ZooBackbone``, and ``ZooBackbone`` in
   mmdet's and mmseg's registries) and :class:`ZooLayerDecayOptimizerConstructor`
   (``zoo.LayerDecayOptimizerConstructor``).

Needs the ``mm`` extra: ``pip install "zoo-backbones[mm]"``.
"""
from . import _mmcv_shim

MMCV_OPS_MODE = _mmcv_shim.install()

try:
    import mmengine  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError('zoo.mm needs the OpenMMLab extra: pip install "zoo-backbones[mm]"') from e

from .backbone import ZooBackbone, build_out_norm, resolve_model_name  # noqa: E402
from .checkpoint import allow_mmengine_checkpoints  # noqa: E402
from .layer_decay import ZooLayerDecayOptimizerConstructor, layer_decay_param_groups  # noqa: E402
from .registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, register_in_openmmlab  # noqa: E402

allow_mmengine_checkpoints()
register_in_openmmlab(ZooBackbone, 'MODELS', MODELS, aliases=('Backbone',))
register_in_openmmlab(ZooLayerDecayOptimizerConstructor, 'OPTIM_WRAPPER_CONSTRUCTORS', OPTIM_WRAPPER_CONSTRUCTORS,
                      aliases=('LayerDecayOptimizerConstructor',))

__all__ = [
    'ZooBackbone', 'ZooLayerDecayOptimizerConstructor', 'layer_decay_param_groups', 'build_out_norm',
    'resolve_model_name', 'allow_mmengine_checkpoints', 'MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'MMCV_OPS_MODE',
]
