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
import logging
import os
from typing import Callable, Dict, Iterable, List, Optional
from urllib.parse import urlparse

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._hub import download_cached_file

_logger = logging.getLogger(__name__)

__all__ = [
    'ZOO_PREFIX', 'register_zoo_model', 'zoo_default_cfgs', 'build_zoo_model', 'zoo_model_names',
    'to_zoo_name', 'is_zoo_model', 'check_image_input', 'check_input_dtype', 'family_of', 'smallest_per_family',
    'randomize_weights_', 'small_input_size',
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
    """`timm.models.build_model_with_cfg` with the pretrained cfg of ``zoo_<variant>``, and pretrained loading
    that cannot go wrong silently.

    timm loads every ``features_only`` model non-strictly (the classifier is dropped), so a checkpoint of
    another architecture would leave the model random with only a logged warning. Here the checkpoint, after
    the family's ``checkpoint_filter_fn``, is compared with the model itself (classifier aside):
    ``pretrained_strict=True`` (timm's default) raises on any missing or unexpected tensor; a non-strict load
    logs the fraction of the parameters it filled and raises below ``pretrained_min_loaded`` (default
    ``MIN_LOADED``; pass 0 to accept any partial load). A missing local file, a refused pickle or a corrupt
    file raise one-line errors naming the file.
    """
    name = to_zoo_name(variant)
    if not pretrained:
        return build_model_with_cfg(model_cls, name, pretrained, **kwargs)
    min_loaded = float(kwargs.pop('pretrained_min_loaded', MIN_LOADED))
    strict = kwargs.get('pretrained_strict', True)
    source = _prepare_pretrained_source(name, kwargs)
    family_filter = kwargs.pop('pretrained_filter_fn', None)
    reports = []

    def filter_and_measure(state_dict, model):
        if family_filter is not None:
            try:
                state_dict = family_filter(state_dict, model)
            except Exception as e:  # noqa: BLE001  (a converter meeting tensors it cannot map: name the file)
                raise _user_error(f'{source} could not be converted for {name} ({type(e).__name__}: {e}): a '
                                  'checkpoint of another architecture or variant?') from e
        reports.append(LoadReport.measure(state_dict, model))
        return state_dict

    from zoo.errors import reading_checkpoint
    with reading_checkpoint(source):
        model = build_model_with_cfg(model_cls, name, pretrained, pretrained_filter_fn=filter_and_measure, **kwargs)
    if reports:
        reports[0].enforce(name, source, strict, min_loaded)
    return model


# a non-strict pretrained load that fills less than this fraction of the parameters is an error
MIN_LOADED = 0.5


class LoadReport:
    """What a (filtered) checkpoint covers of a model: tensors missing, unexpected, and the loaded fraction."""

    def __init__(self, missing: List[str], unexpected: List[str], loaded: int, total: int):
        self.missing, self.unexpected, self.loaded, self.total = missing, unexpected, loaded, total

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 1.0

    @classmethod
    def measure(cls, state_dict, model) -> 'LoadReport':
        classifier = (getattr(model, 'pretrained_cfg', None) or {}).get('classifier') or ()
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)

        def is_head(key):  # the classifier may be dropped or replaced (new num_classes, features_only)
            return any(key == h or key.startswith(h + '.') for h in heads)

        own = {k: v for k, v in model.state_dict().items() if not is_head(k)}
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own and not is_head(k)]
        loaded = sum(v.numel() for k, v in own.items() if k in state_dict)
        return cls(missing, unexpected, loaded, sum(v.numel() for v in own.values()))

    def describe(self) -> str:
        return (f'{100 * self.fraction:.1f}% of the parameters loaded; {len(self.missing)} tensors missing '
                f'{self.missing[:3]}, {len(self.unexpected)} unexpected {self.unexpected[:3]}')

    def enforce(self, name: str, source: str, strict: bool, min_loaded: float):
        if strict and (self.missing or self.unexpected):
            raise _user_error(f'{source} does not fit {name} ({self.describe()}): a checkpoint of another '
                              'architecture or variant? (pretrained_strict=False loads what fits)')
        if self.missing or self.unexpected:
            _logger.warning(f'{name}: non-strict load of {source}: {self.describe()}')
        if self.fraction < min_loaded:
            raise _user_error(f'{source} fills only {100 * self.fraction:.1f}% of {name}\'s parameters (less than '
                              f'pretrained_min_loaded={min_loaded:g}; {self.describe()}); pass '
                              'pretrained_min_loaded=0 to accept it')


def _user_error(message: str) -> Exception:
    from zoo.errors import UserError
    return UserError(message)


def weights_cache_name(cfg) -> str:
    """The file name a downloaded weight is cached under: the URL's file name, or, where the URL names an API
    endpoint rather than a file (BiFormer's OneDrive links all end in ``/content``), ``<arch>.<tag>.pth`` so
    two weights never share a cache file."""
    url = cfg.url if not isinstance(cfg, dict) else cfg.get('url')
    base = os.path.basename(urlparse(url).path)
    if os.path.splitext(base)[1]:
        return base
    arch, tag = (cfg.architecture, cfg.tag) if not isinstance(cfg, dict) else (cfg.get('architecture'),
                                                                                  cfg.get('tag'))
    return f'{arch}.{tag}.pth' if tag else f'{arch}.pth'


def _prepare_pretrained_source(name: str, kwargs: dict) -> str:
    """Where the weights come from (for messages); checks a local file exists and, for URLs that need it,
    downloads under a unique cache name (``weights_cache_name``) and points the overlay at that file."""
    from timm.models import resolve_pretrained_cfg
    from timm.models._builder import _resolve_pretrained_source
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=kwargs.get('pretrained_cfg'),
                                 pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'))
    load_from, location = _resolve_pretrained_source(cfg.to_dict())
    if load_from == 'file':
        if not os.path.isfile(location):
            raise FileNotFoundError(
                f'pretrained weights file {location!r} does not exist (pretrained_cfg_overlay file=...). Download '
                f'the official checkpoint ({name} cfg url / origin_url, see weights/*.json) or convert one with '
                '`zoo convert`')
        return location
    if load_from == 'url' and weights_cache_name(cfg) != os.path.basename(urlparse(location).path):
        path = download_cached_file((location, weights_cache_name(cfg)), check_hash=False, progress=True)
        kwargs['pretrained_cfg_overlay'] = dict(kwargs.get('pretrained_cfg_overlay') or {}, file=path)
        return path
    if isinstance(location, str) and location:
        return location
    return 'the pretrained_cfg state_dict' if load_from == 'state_dict' else f'{name} weights ({load_from})'


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
