"""Registration and building helpers shared by every zoo family file.

The naming rule (README "Names"): every zoo model is registered with timm as ``zoo_<name>``;
it is also registered under the plain ``<name>`` (the official repositories' names) unless
timm itself already ships that name — timm's own models are never shadowed.

A family file writes its entrypoints and cfgs with plain names::

    default_cfgs = zoo_default_cfgs({'biformer_tiny.in1k': _cfg(url=...)})

    @register_zoo_model
    def biformer_tiny(pretrained=False, **kwargs):
        return _create_biformer('biformer_tiny', pretrained, **dict(model_args, **kwargs))

and builds through :func:`build_zoo_model`, which always resolves the pretrained cfg of the
``zoo_`` name, so a plain name that timm also ships can never pick up timm's cfg.
"""
import fnmatch
from typing import Callable, Dict, List, Optional

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

__all__ = [
    'ZOO_PREFIX', 'register_zoo_model', 'zoo_default_cfgs', 'build_zoo_model', 'zoo_model_names',
    'to_zoo_name', 'is_zoo_model', 'check_image_input', 'check_input_dtype',
]

ZOO_PREFIX = 'zoo_'

# plain name -> canonical zoo_ name, for every model this package registered
_ZOO_MODELS: Dict[str, str] = {}
# plain names that are registered in timm under the plain name too (timm had no such model)
_PLAIN_REGISTERED: set = set()


def _timm_ships(name: str) -> bool:
    """True when timm (or another package) already owns ``name``, i.e. it is not ours."""
    return timm.is_model(name) and name not in _PLAIN_REGISTERED


def zoo_default_cfgs(cfgs: Dict[str, dict]):
    """`generate_default_cfgs` over plain ``arch.tag`` keys, duplicated under ``zoo_arch.tag``.

    timm's ``hf_hub_id='timm/'`` shorthand would resolve to ``timm/zoo_<arch>``; pass full hub
    ids instead (``'timm/efficientvit_m0.r224_in1k'``).
    """
    both = {}
    for key, cfg in cfgs.items():
        both[key] = cfg
        both[ZOO_PREFIX + key] = dict(cfg)
    return generate_default_cfgs(both)


def register_zoo_model(fn: Callable) -> Callable:
    """Register ``fn`` as ``zoo_<name>`` and, where timm has no such name, as ``<name>``."""
    name = fn.__name__
    if name.startswith(ZOO_PREFIX):
        raise ValueError(f'entrypoint {name!r}: write the plain name; the {ZOO_PREFIX!r} alias is added here')
    names = [ZOO_PREFIX + name]
    if not _timm_ships(name):
        names.append(name)
        _PLAIN_REGISTERED.add(name)
    for reg_name in names:
        def entrypoint(pretrained: bool = False, _fn=fn, **kwargs):
            return _fn(pretrained=pretrained, **kwargs)
        entrypoint.__name__ = entrypoint.__qualname__ = reg_name
        entrypoint.__module__ = fn.__module__
        entrypoint.__doc__ = fn.__doc__
        register_model(entrypoint)
    _ZOO_MODELS[name] = ZOO_PREFIX + name
    return fn


def check_image_input(x, in_chans: int, family: str, min_size: int = 1, why: str = '', weight=None) -> None:
    """The input check every family runs first: a clear error instead of a crash deep inside.

    ``min_size``: the family's true minimum side, derived from its down-sampling arithmetic; ``why`` says what sets it.
    ``weight``: the model's first layer weight, whose dtype the input must have (unless autocast is on). A batch of 0
    images is valid input (the model returns an empty output of the right shape).
    """
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f'{family} expects input [B, {in_chans}, H, W], got {tuple(x.shape)}')
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f'{family} input {x.shape[-2]}x{x.shape[-1]} is too small: H and W must be at least '
                         f'{min_size}' + (f' ({why})' if why else ''))
    if weight is not None and not torch.jit.is_scripting():
        check_input_dtype(x, weight.dtype, family)


def check_input_dtype(x: torch.Tensor, weight_dtype: torch.dtype, family: str) -> None:
    """A ``TypeError`` that says what to do when the input's dtype cannot meet the weights'.

    Under ``torch.autocast`` any floating input is fine (autocast casts at each op: an fp32 model takes fp32 or
    half inputs there); outside it the input dtype must be the weights' (a ``.half()`` model takes half inputs).
    """
    if not x.is_floating_point():
        if x.is_complex():
            raise TypeError(f'{family} takes a real floating-point image batch, got {x.dtype}')
        raise TypeError(f'{family} got a {x.dtype} image batch: convert it to floating point and normalise it as the '
                        'model expects (e.g. x.float() / 255, then (x - mean) / std with the mean and std of '
                        'model.pretrained_cfg)')
    if x.dtype != weight_dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f'{family} got a {x.dtype} input but its weights are {weight_dtype}: convert the input '
                        f'(x.to({weight_dtype})), or the model (model.to({x.dtype})), or run it under torch.autocast')


def build_zoo_model(model_cls, variant: str, pretrained: bool = False, **kwargs):
    """`timm.models.build_model_with_cfg` with the pretrained cfg of ``zoo_<variant>``."""
    return build_model_with_cfg(model_cls, to_zoo_name(variant), pretrained, **kwargs)


def to_zoo_name(name: str) -> str:
    """Canonical ``zoo_`` name for a plain or ``zoo_`` name (``arch.tag`` keeps its tag)."""
    arch, dot, tag = name.partition('.')
    if arch.startswith(ZOO_PREFIX):
        return name
    return ZOO_PREFIX + arch + dot + tag


def is_zoo_model(name: str) -> bool:
    arch = name.partition('.')[0]
    return arch.removeprefix(ZOO_PREFIX) in _ZOO_MODELS


def zoo_model_names(pattern: Optional[str] = None) -> List[str]:
    """Canonical ``zoo_`` names, sorted; ``pattern`` (fnmatch) may be written with or without the prefix."""
    names = sorted(_ZOO_MODELS.values())
    if not pattern:
        return names
    return [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n[len(ZOO_PREFIX):], pattern)]


def family_of(name: str) -> str:
    """The family (model file) of a zoo model: ``zoo_davit_tiny`` -> ``davit``."""
    fn = timm.models.model_entrypoint(to_zoo_name(name).partition('.')[0])
    return fn.__module__.rpartition('.')[2]


_PARAM_COUNTS: Dict[str, int] = {}


def count_params(name: str, **kwargs) -> int:
    """Parameter count of a registered model, built on the meta device (no memory, no init cost)."""
    key = to_zoo_name(name) + repr(sorted(kwargs.items()))
    if key not in _PARAM_COUNTS:
        import torch
        with torch.device('meta'):
            model = timm.create_model(to_zoo_name(name), **kwargs)
        _PARAM_COUNTS[key] = sum(p.numel() for p in model.parameters())
    return _PARAM_COUNTS[key]


def smallest_per_family() -> List[str]:
    """The zoo_ name of each family's smallest model (by parameter count): what fast tests exercise."""
    best: Dict[str, tuple] = {}
    for name in zoo_model_names():
        fam, n = family_of(name), count_params(name)
        if fam not in best or n < best[fam][0]:
            best[fam] = (n, name)
    return sorted(name for _, name in best.values())
