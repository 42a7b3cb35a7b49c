"""``zoo train`` / ``tools/train.py``: train or fine-tune any zoo (or timm) model.

One CPU, one GPU, or many processes through torchrun (DDP; NCCL on GPUs, gloo on CPUs)::

    python tools/train.py --model efficientvit_m0 --epochs 3 --img-size 64          # embedded digits set
    python tools/train.py --config configs/efficientvit.yaml --model efficientvit_m4 --data-dir /data/imagenet
    torchrun --nproc_per_node 8 tools/train.py --config configs/davit.yaml --model davit_tiny --data-dir ...
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 tools/train.py ...   # two machines
    accelerate launch --multi_gpu --num_processes 8 tools/train.py ...    # HF Accelerate sets the same env vars

The library does the work: timm's ``create_optimizer_v2`` (layer decay through the model's
``group_matcher``), ``create_scheduler_v2``, ``Mixup``, the soft-target / label-smoothing losses,
``ModelEmaV3`` and ``resolve_data_config``; albumentations augments (zoo.data).

A run directory holds ``last.safetensors`` (weights, with the architecture and classes in its
metadata), ``last.state.pt`` (everything ``--resume`` needs: weights, optimizer, scheduler, scaler, EMA,
epoch and step, every rank's RNG states, the resolved args), ``epoch-NNN.safetensors`` (the last
``--checkpoint-hist``), ``best.safetensors``, ``summary.csv`` / ``log.json``, ``curves.png``. Every file is
written atomically. ``--resume DIR`` continues a killed run from its last state with the same result as
an uninterrupted run (bit-identical on CPU with ``--deterministic``).
"""
import argparse
import csv
import io
import json
import math
import os
import random
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

STATE_VERSION = 1
# args that may change between a run and its resumption without changing the result
RUNTIME_ARGS = ('resume', 'workers', 'threads', 'log_wandb', 'wandb_project', 'no_progress', 'kill_after_steps',
                'device', 'verbose')
# args that --resume accepts with a new value (extending a run is common); every other change is refused
RESUME_CHANGEABLE = ('epochs',)


# ---------------------------------------------------------------------------------------------
# arguments

def build_parser() -> argparse.ArgumentParser:
    from .errors import ArgumentParser
    p = ArgumentParser(prog='zoo train', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--config', default=None, help='YAML recipe (configs/<family>.yaml); command-line flags win')
    g = p.add_argument_group('model')
    g.add_argument('-m', '--model', default=None, help='zoo name (plain or zoo_ prefixed) or any timm model name')
    g.add_argument('--pretrained', action='store_true', help="start from the model's default pretrained weights")
    g.add_argument('--pretrained-path', default=None,
                   help="start from a weights file (official or zoo; through the model's checkpoint_filter_fn)")
    g.add_argument('--num-classes', type=int, default=None, help='classifier size (default: the dataset\'s)')
    g.add_argument('--drop', type=float, default=None, help='dropout rate before the classifier')
    g.add_argument('--drop-path', type=float, default=None, help='stochastic depth rate')
    g.add_argument('--grad-checkpointing', action='store_true')
    g.add_argument('--channels-last', action='store_true')
    g.add_argument('--compile', action='store_true', help='torch.compile the model')
    g.add_argument('--sync-bn', action='store_true', help='SyncBatchNorm under DDP (GPU only)')
    g = p.add_argument_group('data')
    g.add_argument('--data-dir', default=None, help='ImageFolder root with train/ and val/ (default: embedded digits)')
    g.add_argument('--train-split', default='train')
    g.add_argument('--val-split', default='val')
    g.add_argument('--img-size', type=int, default=None, help='square input size (default: model cfg; digits: 64)')
    g.add_argument('--crop-pct', type=float, default=None)
    g.add_argument('--mean', type=float, nargs=3, default=None)
    g.add_argument('--std', type=float, nargs=3, default=None)
    g.add_argument('--interpolation', default=None)
    g.add_argument('-b', '--batch-size', type=int, default=64, help='per process')
    g.add_argument('-vb', '--validation-batch-size', type=int, default=None)
    g.add_argument('-j', '--workers', type=int, default=2)
    g.add_argument('--strict-data', action='store_true', help='stop at the first unreadable image instead of skipping')
    g.add_argument('--limit-train-batches', type=int, default=0, help='use only this many batches per epoch (0: all)')
    g.add_argument('--limit-val-batches', type=int, default=0)
    g = p.add_argument_group('augmentation')
    g.add_argument('--scale', type=float, nargs=2, default=None, help='RandomResizedCrop scale (0.08 1; digits 0.5 1)')
    g.add_argument('--ratio', type=float, nargs=2, default=(3 / 4, 4 / 3))
    g.add_argument('--hflip', type=float, default=None, help='horizontal flip probability (default 0.5; digits 0)')
    g.add_argument('--color-jitter', type=float, default=0.4)
    g.add_argument('--aa', default=None, help="auto-augment-like policy, e.g. 'rand-m9-mstd0.5-inc1'")
    g.add_argument('--reprob', type=float, default=0.0, help='random erasing probability')
    g.add_argument('--mixup', type=float, default=0.0)
    g.add_argument('--cutmix', type=float, default=0.0)
    g.add_argument('--mixup-prob', type=float, default=1.0)
    g.add_argument('--mixup-switch-prob', type=float, default=0.5)
    g.add_argument('--mixup-mode', default='batch')
    g.add_argument('--smoothing', type=float, default=0.1)
    g = p.add_argument_group('optimisation')
    g.add_argument('--opt', default='adamw')
    g.add_argument('--opt-eps', type=float, default=None)
    g.add_argument('--opt-betas', type=float, nargs='+', default=None)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--weight-decay', type=float, default=0.05)
    g.add_argument('--clip-grad', type=float, default=None)
    g.add_argument('--clip-mode', default='norm', choices=('norm', 'value', 'agc'))
    g.add_argument('--layer-decay', type=float, default=None)
    g.add_argument('--lr', type=float, default=None, help='lr (default lr-base * global batch / lr-base-size)')
    g.add_argument('--lr-base', type=float, default=2e-3)
    g.add_argument('--lr-base-size', type=int, default=64)
    g.add_argument('--sched', default='cosine')
    g.add_argument('--sched-on-epochs', action='store_true', help='step the lr per epoch instead of per update')
    g.add_argument('--epochs', type=int, default=10)
    g.add_argument('--warmup-epochs', type=float, default=1)
    g.add_argument('--warmup-lr', type=float, default=1e-5)
    g.add_argument('--min-lr', type=float, default=1e-6)
    g.add_argument('--cooldown-epochs', type=int, default=0)
    g.add_argument('--decay-epochs', type=float, default=90)
    g.add_argument('--decay-rate', type=float, default=0.1)
    g.add_argument('--model-ema', action='store_true')
    g.add_argument('--model-ema-decay', type=float, default=0.9998)
    g.add_argument('--model-ema-warmup', action='store_true')
    g.add_argument('--amp', action='store_true', help='mixed precision (bf16 on CPU, --amp-dtype on GPU)')
    g.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    g = p.add_argument_group('run')
    g.add_argument('--output', default=None, help='run directory (default output/<model>-<time>)')
    g.add_argument('--resume', default=None,
                   help='run directory (or its last.state.pt) to continue, in that directory; --epochs N extends it, '
                        'other changed flags are refused')
    g.add_argument('--seed', type=int, default=42)
    g.add_argument('--deterministic', action='store_true', help='deterministic kernels (bit-exact resume on CPU)')
    g.add_argument('--device', default=None, help="'cpu', 'cuda' (default: cuda when available)")
    g.add_argument('--threads', type=int, default=None,
                   help='CPU threads per process (default: torch\'s; 1 is faster on a busy machine)')
    g.add_argument('--save-every-steps', type=int, default=0, help='also write last.* every N updates (0: per epoch)')
    g.add_argument('--checkpoint-hist', type=int, default=3, help='epoch-NNN.safetensors files kept')
    g.add_argument('--log-wandb', action='store_true')
    g.add_argument('--wandb-project', default='zoo')
    g.add_argument('--no-progress', action='store_true', help='no progress bars')
    g.add_argument('--kill-after-steps', type=int, default=0, help=argparse.SUPPRESS)  # tests: SIGKILL itself
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The arguments, checked before anything is built; ``args._explicit`` lists the flags given on the command
    line (what ``--resume`` must apply or refuse)."""
    from .errors import UserError
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    if args.config:
        if args.resume:
            raise UserError('--config with --resume: a resumed run keeps the recipe it was started with')
        parser.set_defaults(**load_recipe(args.config, args.model, parser))
    args = parser.parse_args(argv)
    if args.model is None and not args.resume:
        parser.error('--model is required (or a --config that names one, or --resume)')
    check_args(args)
    args._explicit = sorted(given_flags(argv))
    return args


def given_flags(argv: List[str]) -> set:
    """The destinations of the flags written on the command line (defaults and recipes excluded)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def check_args(args: argparse.Namespace):
    """Values no run can use, refused with the flag's name before any data or model is built."""
    from .errors import UserError
    at_least = {'batch_size': 1, 'epochs': 1, 'img_size': 1, 'validation_batch_size': 1, 'workers': 0,
                'checkpoint_hist': 1, 'limit_train_batches': 0, 'limit_val_batches': 0, 'save_every_steps': 0,
                'threads': 1, 'lr_base_size': 1}
    for key, low in at_least.items():
        value = getattr(args, key)
        if value is not None and value < low:
            raise UserError(f'--{key.replace("_", "-")} must be >= {low}, got {value}')
    for key in ('lr', 'lr_base'):
        if getattr(args, key) is not None and not getattr(args, key) > 0:
            raise UserError(f'--{key.replace("_", "-")} must be > 0, got {getattr(args, key)}')
    if args.pretrained_path and not os.path.isfile(args.pretrained_path):
        raise UserError(f'--pretrained-path {args.pretrained_path!r}: no such file')
    if args.output and os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UserError(f'--output {args.output!r} is a file, not a run directory')


def load_recipe(path: str, model: Optional[str], parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """A YAML recipe: argument names (``-`` or ``_``) at the top, per-model overrides under ``variants``."""
    import yaml
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--config {path!r}: no such file')
    with open(path) as f:
        recipe = yaml.safe_load(f) or {}
    variants = recipe.pop('variants', {}) or {}
    for meta_key in ('paper', 'notes', 'reference'):
        recipe.pop(meta_key, None)
    model = model or recipe.get('model')
    if model is not None:
        plain = model.removeprefix('zoo_')
        chosen = variants.get(model, variants.get(plain, variants.get('zoo_' + plain)))
        if chosen is None and variants:
            raise ValueError(f'{path}: no recipe for model {model!r}; it has {", ".join(variants)}')
        recipe.update(chosen or {})
    known = {a.dest for a in parser._actions}
    recipe = {k.replace('-', '_'): v for k, v in recipe.items()}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f'{path}: unknown keys {unknown} (keys are train.py flags, e.g. weight_decay)')
    return recipe


# ---------------------------------------------------------------------------------------------
# distributed

def init_distributed(device_arg: Optional[str]) -> Tuple[torch.device, int, int, int]:
    """(device, rank, local_rank, world_size); the process group is started under torchrun."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    rank, local_rank = int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0))
    use_cuda = torch.cuda.is_available() if device_arg is None else device_arg.startswith('cuda')
    if use_cuda and not torch.cuda.is_available():
        raise ValueError('--device cuda given but no CUDA device is available')
    device = torch.device('cuda', local_rank) if use_cuda else torch.device('cpu')
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='nccl' if use_cuda else 'gloo')
    return device, rank, local_rank, world


def all_reduce_sum(values: List[float], device) -> List[float]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


# ---------------------------------------------------------------------------------------------
# models and weights

def resolve_model(name: str) -> str:
    """The timm name: zoo names (plain or ``zoo_``) first, then timm's; ``timm:NAME`` forces timm's."""
    import timm

    import zoo
    if name.startswith('timm:'):
        name = name[len('timm:'):]
        if not timm.is_model(name):
            raise ValueError(f'timm has no model {name!r}')
        return name
    try:
        return zoo.resolve_model_name(name)
    except ValueError as zoo_error:
        if timm.is_model(name.partition('.')[0]):
            return name
        raise ValueError(f'unknown model {name!r}: not a zoo model ({zoo_error}) nor a timm model') from None


def create_model(name: str, num_classes: int, img_size: Optional[int] = None, **kwargs) -> nn.Module:
    """Build ``name`` for ``num_classes`` and check it takes ``img_size`` (clear ValueError if not)."""
    import timm
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = timm.create_model(name, num_classes=num_classes, **kwargs)
    cfg = model.pretrained_cfg or {}
    if img_size is not None:
        native = tuple(cfg.get('input_size', (3, 224, 224))[-2:])
        if cfg.get('fixed_input_size') and native != (img_size, img_size):
            try:  # models with a fixed input size usually build for another size through img_size
                model = timm.create_model(name, num_classes=num_classes, img_size=img_size, **kwargs)
            except TypeError:
                raise ValueError(f'model {name!r} only takes {native[0]}x{native[1]} images, not '
                                 f'{img_size}x{img_size} (pass --img-size {native[0]})') from None
        min_size = cfg.get('min_input_size')
        if min_size and img_size < min(min_size[-2:]):
            raise ValueError(f'model {name!r} needs images of at least {min_size[-1]}x{min_size[-2]}, '
                             f'got --img-size {img_size}')
        check_input_size(model, name, img_size)
    return model


def check_input_size(model: nn.Module, name: str, img_size: int):
    """A one-image forward at ``img_size`` (eval mode: no statistics or RNG touched)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size))
    except Exception as e:
        raise ValueError(f'model {name!r} cannot take {img_size}x{img_size} images: {type(e).__name__}: {e}') from e
    finally:
        model.train(was_training)


def read_weights(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(state dict, safetensors metadata) of a weights file; never unpickles arbitrary objects."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'weights file {path!r} does not exist')
    from .errors import reading_checkpoint
    with reading_checkpoint(path):
        if path.endswith('.safetensors'):
            from safetensors import safe_open
            with safe_open(path, framework='pt') as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        state = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('state_dict_ema', 'model_ema', 'model', 'state_dict', 'module'):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and key != 'module':
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f'{path!r} holds no state dict')
    return state, {}


def _classifier_prefixes(model: nn.Module) -> List[str]:
    classifier = (model.pretrained_cfg or {}).get('classifier') or []
    return [classifier] if isinstance(classifier, str) else list(classifier)


def fit_state_dict(model: nn.Module, state: Dict[str, torch.Tensor], allow_new_head: bool, source: str):
    """Convert ``state`` with the model's ``checkpoint_filter_fn`` and load it (strictly, head aside)."""
    state = {k.removeprefix('module.').removeprefix('_orig_mod.'): v for k, v in state.items()}
    filter_fn = getattr(sys.modules.get(type(model).__module__), 'checkpoint_filter_fn', None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    own = model.state_dict()
    head_keys = [k for k in own if any(k == p or k.startswith(p + '.') for p in _classifier_prefixes(model))]
    dropped = [k for k in head_keys if k in state and state[k].shape != own[k].shape]
    if dropped and not allow_new_head:
        k = dropped[0]
        raise ValueError(f'{source}: its classifier has {state[k].shape[0]} classes, the model {own[k].shape[0]}; '
                         f'pass --num-classes {state[k].shape[0]} or use matching data')
    for k in dropped:
        state.pop(k)
    missing = [k for k in own if k not in state and k not in dropped]
    unexpected = [k for k in state if k not in own]
    shape_bad = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shape_bad:
        raise ValueError(
            f'{source} does not fit {type(model).__name__}: {len(missing)} missing keys {missing[:3]}, '
            f'{len(unexpected)} unexpected {unexpected[:3]}, {len(shape_bad)} of other shape {shape_bad[:3]} '
            '(a checkpoint for another architecture or variant?)')
    model.load_state_dict(state, strict=False)
    return dropped


# ---------------------------------------------------------------------------------------------
# checkpoints (atomic)

def atomic_write(path: str, data: bytes):
    """Write, fsync, rename, fsync the directory: a kill leaves the old file or the new one, never half."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems / platforms cannot fsync a directory
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(run_dir: str) -> List[str]:
    """Delete the ``<file>.tmp<PID>`` of writers that died mid-write (a kill during ``atomic_write``); a live
    process's temporaries, and anything outside ``run_dir``, are left alone."""
    import re
    removed = []
    for name in os.listdir(run_dir):
        m = re.fullmatch(r'.+\.tmp(\d+)', name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            path = os.path.join(run_dir, name)
            if os.path.isfile(path):
                os.remove(path)
                removed.append(name)
    return removed


def save_weights(path: str, model: nn.Module, metadata: Dict[str, Any]):
    from safetensors.torch import save
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    atomic_write(path, save(state, metadata=meta))


def save_state(path: str, state: Dict[str, Any]):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def load_state(path: str) -> Dict[str, Any]:
    if os.path.isdir(path):
        path = os.path.join(path, 'last.state.pt')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--resume: no training state at {path!r}')
    from .errors import reading_checkpoint
    with reading_checkpoint(path):
        state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict) or state.get('version') != STATE_VERSION:
        version = state.get('version') if isinstance(state, dict) else None
        raise ValueError(f'{path!r} is not a zoo training state (version {version!r})')
    return state


def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    return {'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            'python': random.getstate()}


def set_rng_state(state: Dict[str, Any]):
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    name, keys, *rest = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_to_tuple(state['python']))


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def gather_rank_states(world: int, own: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every rank's ``own`` dict (RNG states differ per rank), gathered on all ranks."""
    if world == 1:
        return [own]
    states = [None] * world
    torch.distributed.all_gather_object(states, own)
    return states


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, 'module', model)  # DDP
    return getattr(model, '_orig_mod', model)  # torch.compile


# ---------------------------------------------------------------------------------------------
# training

class Trainer:
    """One training run; ``fit()`` returns the final metrics."""

    def __init__(self, args: argparse.Namespace):
        explicit = vars(args).pop('_explicit', None)  # parse_args' record of the flags the user wrote
        self.args = args
        self.epochs_changed = False
        if args.threads:
            torch.set_num_threads(args.threads)
        self.device, self.rank, self.local_rank, self.world = init_distributed(args.device)
        self.is_main = self.rank == 0
        self.resume_state = None
        if args.resume:
            self._adopt_resumed_args(explicit)
        args = self.args
        if args.deterministic:
            os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self._seed(args.seed + self.rank)
        self._build_data()
        self._build_model()
        self._build_optimisation()
        self.start_epoch, self.start_step, self.num_updates = 0, 0, 0
        self.best = {'top1': -1.0, 'epoch': -1}
        self.partial_epoch = (0.0, 0)  # (loss sum, images) of an epoch interrupted by a mid-epoch save
        self.history: List[Dict[str, Any]] = []
        if self.resume_state is not None:
            self._restore(self.resume_state)
        self.run_dir = args.output
        if self.is_main:
            os.makedirs(self.run_dir, exist_ok=True)
            removed = remove_stale_temporaries(self.run_dir)
            if removed:
                print(f'zoo train: removed {len(removed)} temporary files of killed writers: {", ".join(removed)}')
            import yaml
            atomic_write(os.path.join(self.run_dir, 'args.yaml'),
                         yaml.safe_dump(json.loads(json.dumps(vars(args))), sort_keys=True).encode())
            if self.resume_state is not None:
                self._redo_derived_files(self.resume_state)
        self.wandb = self._init_wandb() if args.log_wandb and self.is_main else None

    # -- setup ------------------------------------------------------------------------------

    def _adopt_resumed_args(self, explicit: Optional[List[str]]):
        """Continue the run in the folder ``--resume`` points at, with its saved arguments; flags given now either
        apply (runtime ones, ``--epochs`` to extend the run) or are refused with a message, never ignored."""
        from .errors import UserError
        resume = self.args.resume
        run_dir = resume if os.path.isdir(resume) else os.path.dirname(resume) or '.'
        state = load_state(resume)
        saved = dict(state['args'])
        current = vars(self.args)
        for key, value in current.items():
            saved.setdefault(key, value)  # flags added since the run started
        given = set(explicit) if explicit is not None else {k for k, v in current.items() if v != saved[k]}
        given -= set(RUNTIME_ARGS)
        if 'output' in given:
            if os.path.abspath(current['output']) != os.path.abspath(run_dir):
                raise UserError(f'--output with --resume: a resumed run continues in the folder it is resumed from '
                                f'({run_dir}); copy the run folder there first to continue elsewhere')
            given.discard('output')
        changed = sorted(k for k in given if current[k] != saved[k])
        refused = [k for k in changed if k not in RESUME_CHANGEABLE]
        if refused:
            was = ', '.join(f'--{k.replace("_", "-")} {saved[k]!r} (given {current[k]!r})' for k in refused)
            raise UserError(f'--resume continues {run_dir} as it was started: {was} cannot change. To train on '
                            f'with other settings, start a new run with --pretrained-path '
                            f'{os.path.join(run_dir, "last.safetensors")}')
        if 'epochs' in changed:
            done = state['epoch'] + (1 if state['step_in_epoch'] else 0)
            if current['epochs'] < done:
                raise UserError(f'--epochs {current["epochs"]} with --resume: {run_dir} has already reached epoch '
                                f'{done}; give more epochs to extend it')
            if saved.get('sched') == 'plateau':
                raise UserError('--epochs cannot change on --resume with --sched plateau (its state depends on '
                                'the schedule length)')
            saved['epochs'] = current['epochs']
            self.epochs_changed = True
        for key in RUNTIME_ARGS:
            saved[key] = current.get(key)
        saved['output'] = run_dir
        if state.get('world_size', 1) != self.world:
            warnings.warn(f'resuming a {state.get("world_size")}-process run with {self.world} processes: '
                          'the run continues but is not identical to an uninterrupted one')
        self.args = argparse.Namespace(**saved)
        self.resume_state = state

    @staticmethod
    def _seed(seed: int):
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        torch.manual_seed(seed)

    def _build_data(self):
        from timm.data import resolve_data_config

        from . import data as zdata
        args = self.args
        self.model_name = resolve_model(args.model)
        digits = args.data_dir in (None, '', zdata.DIGITS)
        self.train_set = zdata.create_dataset(args.data_dir, args.train_split, strict=args.strict_data)
        self.val_set = zdata.create_dataset(args.data_dir, args.val_split, strict=args.strict_data,
                                            class_names=getattr(self.train_set, 'classes', None))
        self.classes = list(self.train_set.classes)
        if args.num_classes is None:
            args.num_classes = len(self.classes)
        elif args.num_classes < len(self.classes):
            raise ValueError(f'--num-classes {args.num_classes} is smaller than the {len(self.classes)} classes '
                             'in the data')
        if args.img_size is None and digits:
            args.img_size = 64
        if digits:
            args.hflip = 0.0 if args.hflip is None else args.hflip  # a mirrored digit is another glyph
            args.scale = args.scale or (0.5, 1.0)
        args.hflip = 0.5 if args.hflip is None else args.hflip
        args.scale = tuple(args.scale or (0.08, 1.0))
        from timm.models import get_pretrained_cfg
        base_name = self.model_name.partition('.')[0]
        cfg = get_pretrained_cfg(base_name)
        cfg = cfg.to_dict() if cfg is not None else {}
        overrides = {k: getattr(args, k) for k in ('crop_pct', 'mean', 'std', 'interpolation')
                     if getattr(args, k) is not None}
        if args.img_size:
            overrides['input_size'] = (3, args.img_size, args.img_size)
        self.data_config = resolve_data_config(overrides, pretrained_cfg=cfg)
        if args.img_size is None:
            args.img_size = int(self.data_config['input_size'][-1])
        dc = self.data_config
        self.train_set.transform = zdata.train_transform(
            dc['input_size'], dc['mean'], dc['std'], dc['interpolation'], scale=args.scale, ratio=args.ratio,
            hflip=args.hflip, color_jitter=args.color_jitter, auto_augment=args.aa, reprob=args.reprob)
        self.val_set.transform = zdata.eval_transform(dc['input_size'], dc['mean'], dc['std'], dc['interpolation'],
                                                      dc['crop_pct'])
        self.train_sampler = zdata.ShardedSampler(len(self.train_set), args.batch_size, self.rank, self.world,
                                                  shuffle=True, seed=args.seed, drop_last=True)
        if args.limit_train_batches:
            self.train_sampler.n = min(len(self.train_set), args.limit_train_batches * args.batch_size * self.world)
        if len(self.train_sampler) == 0:
            raise ValueError(f'{len(self.train_set)} training images do not fill one global batch of '
                             f'{args.batch_size * self.world}; lower --batch-size')
        val_bs = args.validation_batch_size or args.batch_size
        self.val_sampler = zdata.ShardedSampler(len(self.val_set), val_bs, self.rank, self.world, shuffle=False,
                                                seed=args.seed, drop_last=False)
        if args.limit_val_batches:
            self.val_sampler.n = min(len(self.val_set), args.limit_val_batches * val_bs * self.world)
        pin = self.device.type == 'cuda'
        self.train_loader = zdata.create_loader(self.train_set, args.batch_size, self.train_sampler, args.workers, pin)
        self.val_loader = zdata.create_loader(self.val_set, val_bs, self.val_sampler, args.workers, pin)
        self.bad_images = zdata.BadImageCounter()

    def _build_model(self):
        args = self.args
        model = create_model(self.model_name, args.num_classes, args.img_size, drop_rate=args.drop,
                             drop_path_rate=args.drop_path, pretrained=args.pretrained)
        if args.pretrained_path and self.resume_state is None:
            state, _ = read_weights(args.pretrained_path)
            dropped = fit_state_dict(model, state, allow_new_head=True, source=args.pretrained_path)
            if dropped and self.is_main:
                print(f'zoo train: new {args.num_classes}-class classifier ({", ".join(dropped)} not loaded)')
        if args.grad_checkpointing:
            model.set_grad_checkpointing(True)
        model.to(self.device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        if args.sync_bn and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ema = None
        if args.model_ema:
            from timm.utils import ModelEmaV3
            self.ema = ModelEmaV3(model, decay=args.model_ema_decay, use_warmup=args.model_ema_warmup)
        if self.world > 1:
            ids = [self.local_rank] if self.device.type == 'cuda' else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.train_model = torch.compile(model) if args.compile else model

    def _build_optimisation(self):
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        args = self.args
        global_batch = args.batch_size * self.world
        if args.lr is None:
            args.lr = args.lr_base * global_batch / args.lr_base_size
        opt_kwargs = {}
        if args.opt_eps is not None:
            opt_kwargs['eps'] = args.opt_eps
        if args.opt_betas is not None:
            opt_kwargs['betas'] = tuple(args.opt_betas)
        base = unwrap(self.model)
        if args.layer_decay is not None and not hasattr(base, 'group_matcher'):
            raise ValueError(f'--layer-decay needs a model with group_matcher(); {self.model_name} has none')
        self.optimizer = create_optimizer_v2(base, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                             momentum=args.momentum, layer_decay=args.layer_decay, **opt_kwargs)
        self.updates_per_epoch = len(self.train_sampler) // args.batch_size
        self.scheduler, self.num_epochs = create_scheduler_v2(
            self.optimizer, sched=args.sched, num_epochs=args.epochs, decay_epochs=args.decay_epochs,
            decay_rate=args.decay_rate, min_lr=args.min_lr, warmup_lr=args.warmup_lr,
            warmup_epochs=args.warmup_epochs, cooldown_epochs=args.cooldown_epochs,
            step_on_epochs=args.sched_on_epochs, updates_per_epoch=self.updates_per_epoch)
        self.mixup = None
        if args.mixup > 0 or args.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                               switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                               label_smoothing=args.smoothing, num_classes=args.num_classes)
            self.train_loss = SoftTargetCrossEntropy()
        elif args.smoothing:
            self.train_loss = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
        else:
            self.train_loss = nn.CrossEntropyLoss()
        self.eval_loss = nn.CrossEntropyLoss(reduction='sum')
        self.amp_dtype = torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16
        if args.amp and self.device.type == 'cpu' and self.amp_dtype == torch.float16:
            warnings.warn('--amp-dtype float16 on CPU is slow and unscaled; bfloat16 is used instead')
            self.amp_dtype = torch.bfloat16
        use_scaler = args.amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)

    def _autocast(self):
        if not self.args.amp:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _init_wandb(self):
        try:
            import wandb
            return wandb.init(project=self.args.wandb_project, config=vars(self.args), dir=self.run_dir,
                              name=os.path.basename(os.path.normpath(self.run_dir)), resume='allow')
        except Exception as e:  # no API key, no network: the run goes on without wandb
            warnings.warn(f'wandb disabled: {type(e).__name__}: {e} (set WANDB_MODE=offline to log locally)')
            return None

    # -- state --------------------------------------------------------------------------------

    def _metadata(self, **extra) -> Dict[str, Any]:
        import zoo
        meta = {'zoo_arch': self.model_name, 'num_classes': self.args.num_classes, 'img_size': self.args.img_size,
                'classes': self.classes, 'zoo_version': zoo.__version__, 'data_config': {
                    k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()}}
        meta.update(extra)
        return meta

    def _state(self, epoch: int, step_in_epoch: int, ranks: List[Dict[str, Any]],
               finished_epoch: Optional[int]) -> Dict[str, Any]:
        return {
            'version': STATE_VERSION, 'args': vars(self.args), 'epoch': epoch, 'step_in_epoch': step_in_epoch,
            'finished_epoch': finished_epoch,
            'num_updates': self.num_updates, 'world_size': self.world,
            'model': unwrap(self.model).state_dict(), 'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(), 'scaler': self.scaler.state_dict(),
            'ema': self.ema.module.state_dict() if self.ema is not None else None,
            'ranks': ranks, 'best': self.best, 'history': self.history, 'bad_images': self.bad_images.count,
        }

    def save_last(self, epoch: int, step_in_epoch: int, finished_epoch: Optional[int] = None):
        """Commit the run at (epoch, step), then write the files derived from it.

        ``last.state.pt`` is the one commit point: once it is in place the run has reached this step. It names
        the files derived from it (``last.safetensors`` always; with ``finished_epoch``, that epoch's
        ``epoch-NNN``, ``best`` when it was the best, ``summary.csv``, ``log.json``), which are written next
        from the same weights and history; a kill among them is repaired by ``--resume``, which writes them
        again from the state before training on (``_redo_derived_files``). A kill before the commit leaves
        the previous state, and the resumed run redoes the steps since.
        """
        # a collective: every rank takes part
        ranks = gather_rank_states(self.world, {'rng': rng_state(), 'partial_epoch': list(self.partial_epoch)})
        if not self.is_main:
            return
        save_state(os.path.join(self.run_dir, 'last.state.pt'),
                   self._state(epoch, step_in_epoch, ranks, finished_epoch))
        self._write_derived_files(epoch, step_in_epoch, finished_epoch)

    def _write_derived_files(self, epoch: int, step_in_epoch: int, finished_epoch: Optional[int]):
        save_weights(os.path.join(self.run_dir, 'last.safetensors'), self.model,
                     self._metadata(epoch=epoch, step_in_epoch=step_in_epoch, num_updates=self.num_updates))
        if finished_epoch is not None:
            self._write_epoch_files(finished_epoch, self.history[-1], self.best['epoch'] == finished_epoch)

    def _redo_derived_files(self, state: Dict[str, Any]):
        """On resume: write again the files the restored state names (a kill may have cut them off), and drop
        a results.json the run is about to outdate."""
        self._write_derived_files(state['epoch'], state['step_in_epoch'], state.get('finished_epoch'))
        results = os.path.join(self.run_dir, 'results.json')
        if self.start_epoch < self.num_epochs and os.path.exists(results):
            os.remove(results)

    def _restore(self, state: Dict[str, Any]):
        unwrap(self.model).load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        if not self.epochs_changed:  # an extended run keeps the schedule built for its new length
            self.scheduler.load_state_dict(state['scheduler'])
        self.scaler.load_state_dict(state['scaler'])
        if self.ema is not None and state['ema'] is not None:
            self.ema.module.load_state_dict(state['ema'])
        self.start_epoch, self.start_step = state['epoch'], state['step_in_epoch']
        self.num_updates = state['num_updates']
        self.best, self.history = state['best'], list(state['history'])
        self.bad_images.restored = state.get('bad_images', 0)
        own = state['ranks'][self.rank if self.rank < len(state['ranks']) else 0]
        set_rng_state(own['rng'])
        self.partial_epoch = tuple(own['partial_epoch'])
        if self.start_step >= self.updates_per_epoch:
            self.start_epoch, self.start_step = self.start_epoch + 1, 0

    # -- loops --------------------------------------------------------------------------------

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        from tqdm import tqdm
        args = self.args
        self.train_model.train()
        skip = self.start_step if epoch == self.start_epoch else 0
        self.train_sampler.set_epoch(epoch, skip_batches=skip)
        self.scheduler.step(epoch)
        loss_sum, seen = self.partial_epoch if skip else (0.0, 0)
        tic = time.perf_counter()
        bar = tqdm(self.train_loader, total=self.updates_per_epoch, initial=skip, desc=f'train {epoch}',
                   disable=not self.is_main or args.no_progress, dynamic_ncols=True, leave=False)
        for step, (images, targets, bad) in enumerate(bar, start=skip):
            self.bad_images.add(bad)
            if images is None:
                if self.world > 1:
                    raise RuntimeError('a whole batch of unreadable images under DDP; clean the data set')
                continue
            images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if self.mixup is not None:  # its draws come from numpy: seed them by the update so resume is exact
                np.random.seed((args.seed * 7919 + self.num_updates) % 2 ** 32)
                images, targets = self.mixup(images, targets)
            self.scheduler.step_update(self.num_updates)
            with self._autocast():
                loss = self.train_loss(self.train_model(images), targets)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f'loss is {loss.item()} at epoch {epoch} step {step}; lower --lr')
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if args.clip_grad:
                from timm.utils import dispatch_clip_grad
                self.scaler.unscale_(self.optimizer)
                dispatch_clip_grad(unwrap(self.model).parameters(), args.clip_grad, mode=args.clip_mode)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.num_updates += 1
            if self.ema is not None:
                self.ema.update(unwrap(self.model), step=self.num_updates)
            loss_sum += loss.item() * images.shape[0]
            seen += images.shape[0]
            lr = self.optimizer.param_groups[0]['lr']
            bar.set_postfix(loss=f'{loss_sum / seen:.4f}', lr=f'{lr:.2e}',
                            img_s=f'{seen * self.world / (time.perf_counter() - tic):.0f}')
            if self.wandb is not None:
                self.wandb.log({'train/loss': loss.item(), 'lr': lr}, step=self.num_updates)
            if args.save_every_steps and self.num_updates % args.save_every_steps == 0:
                self.partial_epoch = (loss_sum, seen)
                self.save_last(epoch, step + 1)
            if args.kill_after_steps and self.num_updates >= args.kill_after_steps:
                os.kill(os.getpid(), signal.SIGKILL)  # tests: die the hard way, mid-epoch
        bar.close()
        loss_sum, seen = all_reduce_sum([loss_sum, seen], self.device)
        elapsed = time.perf_counter() - tic
        return {'train_loss': loss_sum / max(seen, 1), 'lr': self.optimizer.param_groups[0]['lr'],
                'train_img_s': seen / elapsed if elapsed > 0 else 0.0}

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        return evaluate(model, self.val_loader, self.device, self.eval_loss, self._autocast, self.bad_images,
                        channels_last=self.args.channels_last, progress=self.is_main and not self.args.no_progress)

    def fit(self) -> Dict[str, Any]:
        args = self.args
        if self.is_main:
            n_params = sum(p.numel() for p in unwrap(self.model).parameters())
            print(f'zoo train: {self.model_name} ({n_params / 1e6:.2f}M params), {len(self.train_set)} train / '
                  f'{len(self.val_set)} val images, {args.num_classes} classes, {args.img_size}px, '
                  f'{self.world} process(es) on {self.device.type}, global batch {args.batch_size * self.world}, '
                  f'lr {args.lr:.3g}, {self.num_epochs} epochs -> {self.run_dir}')
        for epoch in range(self.start_epoch, self.num_epochs):
            metrics = self.train_one_epoch(epoch)
            metrics.update(epoch=epoch, **{f'val_{k}': v for k, v in self.evaluate(self.train_model).items()})
            best_key = 'val_top1'
            if self.ema is not None:
                metrics.update({f'ema_{k}': v for k, v in self.evaluate(self.ema.module).items()})
                best_key = 'ema_top1'
            metrics['bad_images'] = self.bad_images.count
            self.history.append(metrics)
            is_best = metrics[best_key] > self.best['top1']
            if is_best:
                self.best = {'top1': metrics[best_key], 'epoch': epoch}
            self.partial_epoch = (0.0, 0)
            self.save_last(epoch + 1, 0, finished_epoch=epoch)
            if self.is_main:
                ema = f', EMA top-1 {metrics["ema_top1"]:.2f}%' if self.ema is not None else ''
                print(f'epoch {epoch}: train loss {metrics["train_loss"]:.4f}, val loss {metrics["val_loss"]:.4f}, '
                      f'top-1 {metrics["val_top1"]:.2f}%, top-5 {metrics["val_top5"]:.2f}%{ema}, '
                      f'{metrics["train_img_s"]:.0f} img/s')
                if self.wandb is not None:
                    self.wandb.log({k: v for k, v in metrics.items() if k != 'epoch'}, step=self.num_updates)
        return self._finish()

    def _write_epoch_files(self, epoch: int, metrics: Dict[str, Any], is_best: bool):
        d = self.run_dir
        save_weights(os.path.join(d, f'epoch-{epoch:03d}.safetensors'), self.model,
                     self._metadata(epoch=epoch, top1=metrics['val_top1']))
        old = sorted(f for f in os.listdir(d) if f.startswith('epoch-') and f.endswith('.safetensors'))
        for name in old[:max(0, len(old) - self.args.checkpoint_hist)]:
            os.remove(os.path.join(d, name))
        if is_best:
            best_model = self.ema.module if self.ema is not None else self.model
            save_weights(os.path.join(d, 'best.safetensors'), best_model,
                         self._metadata(epoch=epoch, top1=self.best['top1'], ema=self.ema is not None))
        keys = sorted({k for row in self.history for k in row})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=['epoch'] + [k for k in keys if k != 'epoch'])
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write(os.path.join(d, 'summary.csv'), buffer.getvalue().encode())
        atomic_write(os.path.join(d, 'log.json'), json.dumps(self.history, indent=1).encode())

    def _finish(self) -> Dict[str, Any]:
        last = self.history[-1] if self.history else {}
        result = {'model': self.model_name, 'run_dir': self.run_dir, 'epochs': len(self.history),
                  'best_top1': self.best['top1'], 'best_epoch': self.best['epoch'],
                  'last_top1': last.get('val_top1'), 'last_top5': last.get('val_top5'),
                  'last_train_loss': last.get('train_loss'), 'bad_images': self.bad_images.count,
                  'checkpoint': os.path.join(self.run_dir, 'last.safetensors'),
                  'best_checkpoint': os.path.join(self.run_dir, 'best.safetensors')}
        if self.is_main:
            atomic_write(os.path.join(self.run_dir, 'results.json'), json.dumps(result, indent=1).encode())
            plot_curves(self.history, os.path.join(self.run_dir, 'curves.png'))
            if self.bad_images.count:
                print(f'zoo train: {self.bad_images.count} unreadable images were skipped')
            if self.wandb is not None:
                self.wandb.summary.update({'best_top1': self.best['top1']})
                self.wandb.finish()
            if last:
                print(f'zoo train: {self.model_name} val top-1 {last["val_top1"]:.2f}% (best '
                      f'{self.best["top1"]:.2f}% at epoch {self.best["epoch"]}), top-5 {last["val_top5"]:.2f}%; '
                      f'checkpoint {result["checkpoint"]} (best: {result["best_checkpoint"]})')
        return result


def evaluate(model: nn.Module, loader, device, loss_fn, autocast=nullcontext, bad_counter=None,
             channels_last: bool = False, progress: bool = False) -> Dict[str, float]:
    """Top-1 / top-5 (%) and mean loss over ``loader``, summed over all ranks."""
    from tqdm import tqdm
    was_training = model.training
    model.eval()
    correct1 = correct5 = loss_sum = count = 0.0
    with torch.no_grad():
        for images, targets, bad in tqdm(loader, desc='eval', disable=not progress, dynamic_ncols=True, leave=False):
            if bad_counter is not None:
                bad_counter.add(bad)
            if images is None:
                continue
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(images)
            logits = logits.float()
            loss_sum += loss_fn(logits, targets).item()
            k = min(5, logits.shape[-1])
            top = logits.topk(k, dim=-1).indices
            hits = top.eq(targets[:, None])
            correct1 += hits[:, 0].sum().item()
            correct5 += hits.any(dim=-1).sum().item()
            count += targets.numel()
    model.train(was_training)
    correct1, correct5, loss_sum, count = all_reduce_sum([correct1, correct5, loss_sum, count], device)
    if count == 0:
        raise ValueError('no readable validation images')
    return {'top1': 100.0 * correct1 / count, 'top5': 100.0 * correct5 / count, 'loss': loss_sum / count,
            'count': int(count)}


def plot_curves(history: List[Dict[str, Any]], path: str):
    """Loss and accuracy per epoch as a PNG (skipped with a note when matplotlib is missing)."""
    if not history:
        return
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('zoo train: matplotlib not installed, no curves.png')
        return
    epochs = [h['epoch'] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h['train_loss'] for h in history], label='train')
    ax_loss.plot(epochs, [h['val_loss'] for h in history], label='val')
    ax_loss.set(xlabel='epoch', ylabel='loss', title='loss')
    ax_acc.plot(epochs, [h['val_top1'] for h in history], label='top-1')
    ax_acc.plot(epochs, [h['val_top5'] for h in history], label='top-5')
    if 'ema_top1' in history[0]:
        ax_acc.plot(epochs, [h['ema_top1'] for h in history], label='EMA top-1')
    ax_acc.set(xlabel='epoch', ylabel='accuracy (%)', title='validation accuracy')
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def run(argv: List[str]) -> int:
    args = parse_args(argv)
    if args.output is None and not args.resume:
        args.output = os.path.join('output', f'{args.model.replace(":", "_")}-{time.strftime("%Y%m%d-%H%M%S")}')
    try:
        Trainer(args).fit()
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .errors import run_command
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command('zoo train', lambda: run(argv), verbose='--verbose' in argv)


if __name__ == '__main__':
    sys.exit(main())
