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
from typing import Callable, Dict, Iterable, List, Optional

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

__all__ = [
    'ZOO_PREFIX', 'register_zoo_model', 'zoo_default_cfgs', 'build_zoo_model', 'zoo_model_names',
    'to_zoo_name', 'is_zoo_model', 'check_image_input', 'family_of', 'smallest_per_family', 'randomize_weights_',
    'small_input_size',
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


def check_image_input(x, in_chans: int, family: str, min_size: int = 1, why: str = '') -> None:
    """The input check every family runs first: a clear ``ValueError`` instead of a crash deep inside."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f'{family} expects input [B, {in_chans}, H, W], got {tuple(x.shape)}')
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f'{family} input {tuple(x.shape[-2:])} is too small: needs H, W >= {min_size}, it is '
                         f'smaller than the minimum {min_size}x{min_size}' + (f' ({why})' if why else ''))


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


def smallest_per_family(families: Optional[Iterable[str]] = None) -> List[str]:
    """The zoo_ name of each family's smallest model (by parameter count): what fast tests exercise.

    ``families`` (family names, e.g. ``['davit', 'volo']``) limits the search to those families.
    """
    wanted = set(families) if families is not None else None
    best: Dict[str, tuple] = {}
    for name in zoo_model_names():
        fam = family_of(name)
        if wanted is not None and fam not in wanted:
            continue
        n = count_params(name)
        if fam not in best or n < best[fam][0]:
            best[fam] = (n, name)
    return sorted(name for _, name in best.values())


def randomize_weights_(model, seed: int = 0):
    """Perturb a (CPU) model's weights so no output is trivially ~0: zero-init gammas / heads, identity BN stats.

    For numerical comparisons (ONNX parity, Triton vs reference), where a difference of 0 between two
    outputs that are both ~0 would prove nothing.
    """
    import torch
    from torch import nn
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim <= 1:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
            elif p.abs().max() == 0:
                p.normal_(0, 0.05, generator=g)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model


def small_input_size(name: str):
    """A small test size (H, W) for a registered model: its fixed size where fixed, else max(64, min_input_size)."""
    cfg = timm.models.get_pretrained_cfg(name.partition('.')[0]) if timm.is_model(name) else None
    cfg = cfg.to_dict() if cfg is not None else {}
    if cfg.get('fixed_input_size'):
        return tuple(cfg['input_size'][1:])
    side = max(64, *cfg.get('min_input_size', (3, 64, 64))[1:])
    return side, side
