"""``zoo convert``: official checkpoints -> zoo safetensors files.

    zoo convert moat --variant moat_0 --src moat0_imagenet_1k_224_w_position_embedding/ --out moat_0.safetensors

Families whose official weights are not PyTorch state dicts register a converter in ``CONVERTERS``
(family -> function(args)). MOAT: the official weights are TF1 checkpoints (extract the released ``.tar.gz``;
``--src`` is the extracted folder or its ``model.ckpt-*`` prefix). Reading them needs TensorFlow (``pip install
tensorflow-cpu``), imported only here. ``--src`` may also be a ``.npz`` or ``.safetensors`` file of TF variable
names -> arrays (no TensorFlow needed), e.g. written by ``tf.train.load_checkpoint`` elsewhere.
"""
import argparse
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch

__all__ = ['main', 'read_tf_checkpoint', 'numeric_tensors', 'convert_moat', 'CONVERTERS']


def read_tf_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """TF variable name -> tensor, from a TF checkpoint (folder or prefix), a ``.npz`` or a ``.safetensors`` file."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        tensors = load_file(path)
        # the parity fixtures store the TF variables as "state_dict.<name>" next to inputs/outputs
        if any(k.startswith('state_dict.') for k in tensors):
            tensors = {k[len('state_dict.'):]: v for k, v in tensors.items() if k.startswith('state_dict.')}
        return tensors
    if path.endswith('.npz'):
        import numpy as np
        with np.load(path, allow_pickle=False) as data:
            return numeric_tensors((k, data[k]) for k in data.files)
    try:
        import tensorflow as tf  # optional: only TF checkpoints need it
    except ImportError as e:
        raise RuntimeError(
            f'reading the TF checkpoint {path!r} needs TensorFlow: pip install tensorflow-cpu '
            '(or convert it to .npz elsewhere and pass that)') from e
    reader = tf.train.load_checkpoint(path)
    return numeric_tensors((name, reader.get_tensor(name)) for name in reader.get_variable_to_shape_map())


def numeric_tensors(items: Iterable[Tuple[str, Any]]) -> Dict[str, torch.Tensor]:
    """(name, array or numpy scalar) pairs -> name -> tensor, dropping non-numeric values (strings, objects).

    TF's checkpoint reader returns 0-d variables (``global_step``) as numpy scalars, not arrays, and TF1 checkpoints
    may hold string entries: every value goes through ``np.array`` (a copy, also of read-only buffers) first.
    """
    import numpy as np
    out = {}
    for name, value in items:
        value = np.array(value)
        if value.dtype.kind in 'fiub':
            out[name] = torch.from_numpy(value)
    return out


def convert_moat(args) -> int:
    import timm
    from safetensors.torch import save_file

    import zoo  # noqa: F401  (registers the models)
    from zoo.models.moat import convert_tf_checkpoint

    if not os.path.exists(args.src) and not os.path.exists(args.src + '.index'):
        raise FileNotFoundError(f'no checkpoint at {args.src!r}')
    from .errors import reading_checkpoint
    with reading_checkpoint(args.src):  # a corrupt file or a refused pickle: one line naming it
        variables = read_tf_checkpoint(args.src)
    state_dict = convert_tf_checkpoint(variables, use_ema=not args.no_ema)
    if not state_dict:
        raise ValueError(f'{args.src!r} holds no MOAT variables (expected names like moat/block_00_00/...)')
    # check against the architecture (built on the meta device: no memory, no init)
    with torch.device('meta'):
        model = timm.create_model(zoo.resolve_model_name(args.variant), num_classes=args.num_classes)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    bad_shape = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    head_only = all(k.startswith('head.') for k in missing)
    if unexpected or bad_shape or (missing and not head_only):
        raise ValueError(f'checkpoint does not fit {args.variant}: missing {missing[:8]}, unexpected '
                         f'{unexpected[:8]}, shape mismatch {bad_shape[:8]}')
    if missing:
        print(f'note: the checkpoint has no classifier head ({", ".join(missing)}); load it with num_classes=0 '
              'or your own head', file=sys.stderr)
    out = args.out or f'{args.variant}.safetensors'
    meta = {'variant': args.variant, 'source': os.path.basename(os.path.normpath(args.src)),
            'ema': str(not args.no_ema), 'format': 'zoo state_dict (converted from the official TF checkpoint)'}
    save_file({k: v.contiguous() for k, v in state_dict.items()}, out, metadata=meta)
    print(f'wrote {out}: {len(state_dict)} tensors, {sum(v.numel() for v in state_dict.values()):,} values')
    return 0


CONVERTERS: Dict[str, Callable] = {'moat': convert_moat}


def _parser() -> argparse.ArgumentParser:
    from .errors import ArgumentParser
    p = ArgumentParser(prog='zoo convert', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='family', required=True)
    m = sub.add_parser('moat', help='official TF MOAT checkpoint -> safetensors')
    m.add_argument('--variant', required=True, help='zoo model name, e.g. moat_0, tiny_moat_2_no_pe')
    m.add_argument('--src', required=True, help='TF checkpoint folder / prefix, or a .npz / .safetensors of TF vars')
    m.add_argument('--out', default=None, help='output .safetensors (default: <variant>.safetensors)')
    m.add_argument('--no-ema', action='store_true',
                   help='take the raw variables instead of their ExponentialMovingAverage copies')
    m.add_argument('--num-classes', type=int, default=1000, help='classes of the checkpoint head (default 1000)')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    from .errors import run_command
    args = _parser().parse_args(argv)
    return run_command(f'zoo convert {args.family}', lambda: CONVERTERS[args.family](args), verbose=args.verbose)


if __name__ == '__main__':
    sys.exit(main())
