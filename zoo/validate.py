"""``zoo validate`` / ``tools/validate.py``: top-1 / top-5 of a checkpoint on an ImageFolder or the digits set.

    python tools/validate.py --checkpoint output/run/best.safetensors                 # model, size, classes
    python tools/validate.py --model davit_tiny --checkpoint davit_tiny.pth --data-dir /data/imagenet

The eval transform is the model's pretrained cfg (crop_pct, interpolation, mean/std), or, for a
checkpoint written by ``zoo train``, the data config it was trained with (stored in its metadata), so
the accuracy printed here is the one training reported. Official checkpoints go through the model's
``checkpoint_filter_fn``. Under torchrun the validation set is sharded and the counts summed.
"""
import argparse
import json
import os
import sys
from contextlib import nullcontext
from typing import List, Optional

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from . import data as zdata  # noqa: E402
from .train import create_model, evaluate, fit_state_dict, init_distributed, read_weights, resolve_model  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    from .errors import ArgumentParser
    p = ArgumentParser(prog='zoo validate', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('-m', '--model', default=None, help='model name (default: the one stored in a zoo checkpoint)')
    p.add_argument('--checkpoint', default=None, help='weights file (.safetensors, or .pth/.pt loaded weights-only)')
    p.add_argument('--pretrained', action='store_true', help="the model's default pretrained weights")
    p.add_argument('--data-dir', default=None, help='ImageFolder root (default: embedded digits)')
    p.add_argument('--split', default='val')
    p.add_argument('--num-classes', type=int, default=None, help='classifier size when it differs from the data')
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--crop-pct', type=float, default=None)
    p.add_argument('--mean', type=float, nargs=3, default=None)
    p.add_argument('--std', type=float, nargs=3, default=None)
    p.add_argument('--interpolation', default=None)
    p.add_argument('-b', '--batch-size', type=int, default=64)
    p.add_argument('-j', '--workers', type=int, default=2)
    p.add_argument('--amp', action='store_true')
    p.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--device', default=None)
    p.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch\'s)')
    p.add_argument('--strict-data', action='store_true')
    p.add_argument('--results-file', default=None, help='also write the results as JSON here')
    return p


def _parse_meta(meta):
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def check_args(args: argparse.Namespace):
    """Values no evaluation can use, refused with the flag's name before anything is loaded or built."""
    from .errors import UserError
    for key, low in (('batch_size', 1), ('img_size', 1), ('workers', 0), ('threads', 1), ('num_classes', 1)):
        value = getattr(args, key)
        if value is not None and value < low:
            raise UserError(f'--{key.replace("_", "-")} must be >= {low}, got {value}')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise UserError(f'--checkpoint {args.checkpoint!r}: no such file')


def checkpoint_metadata(path: str) -> dict:
    """The metadata ``zoo train`` stores in a .safetensors checkpoint (arch, classes, data config), parsed;
    {} for other files. Reads the header only."""
    if not str(path).endswith('.safetensors') or not os.path.isfile(path):
        return {}
    from safetensors import safe_open
    with safe_open(path, framework='pt') as f:
        return _parse_meta(f.metadata() or {})


def resolve_checkpoint(args: argparse.Namespace):
    """(timm name, state dict, parsed metadata, the model's pretrained cfg) from ``--model`` / ``--checkpoint``;
    the name stored in a zoo checkpoint is the default and must agree with ``--model``."""
    from timm.models import get_pretrained_cfg
    if not args.checkpoint and not args.pretrained:
        raise ValueError('give --checkpoint FILE (or --pretrained for the default weights)')
    state, meta = read_weights(args.checkpoint) if args.checkpoint else ({}, {})
    meta = _parse_meta(meta)
    if args.model is None and 'zoo_arch' not in meta:
        raise ValueError('--model is required: the checkpoint does not name its architecture')
    name = resolve_model(args.model or meta['zoo_arch'])
    trained_as = meta.get('zoo_arch')
    if trained_as and resolve_model(trained_as) != name:
        raise ValueError(f'{args.checkpoint!r} is a checkpoint of {trained_as}, not of {name}')
    cfg = get_pretrained_cfg(name.partition('.')[0])
    return name, state, meta, cfg.to_dict() if cfg is not None else {}


def eval_data_config(args: argparse.Namespace, meta: dict, cfg: dict) -> dict:
    """The eval preprocessing: the checkpoint's training data config (else the model cfg), flags win."""
    from timm.data import resolve_data_config
    overrides = dict(meta.get('data_config') or {})
    overrides.update({k: getattr(args, k) for k in ('crop_pct', 'mean', 'std', 'interpolation')
                      if getattr(args, k, None) is not None})
    if getattr(args, 'input_size', None):
        overrides['input_size'] = tuple(args.input_size)
    elif args.img_size:
        overrides['input_size'] = (3, args.img_size, args.img_size)
    elif meta.get('img_size'):
        overrides['input_size'] = (3, int(meta['img_size']), int(meta['img_size']))
    return resolve_data_config(overrides, pretrained_cfg=cfg)


def validate(args: argparse.Namespace) -> dict:
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, rank, _, world = init_distributed(args.device)
    name, state, meta, cfg = resolve_checkpoint(args)

    dataset = zdata.create_dataset(args.data_dir, args.split, strict=args.strict_data)
    ckpt_classes = meta.get('num_classes') or (cfg.get('num_classes') if not args.checkpoint else None)
    num_classes = args.num_classes or ckpt_classes or dataset.num_classes
    if args.num_classes is None and num_classes != dataset.num_classes:
        raise ValueError(f'the checkpoint predicts {num_classes} classes but {args.data_dir or "digits"} has '
                         f'{dataset.num_classes}; pass --num-classes {num_classes} to evaluate anyway')
    if meta.get('classes') and isinstance(dataset, zdata.ImageFolderDataset) and dataset.classes != meta['classes']:
        # label i must mean the class the checkpoint learned as i (a val folder may lack some classes)
        dataset = zdata.create_dataset(args.data_dir, args.split, strict=args.strict_data,
                                       class_names=meta['classes'])

    dc = eval_data_config(args, meta, cfg)
    img_size = int(dc['input_size'][-1])

    model = create_model(name, num_classes, img_size, pretrained=args.pretrained)
    if args.checkpoint:
        fit_state_dict(model, state, allow_new_head=False, source=args.checkpoint)
    model.to(device).eval()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)

    dataset.transform = zdata.eval_transform(dc['input_size'], dc['mean'], dc['std'], dc['interpolation'],
                                             dc['crop_pct'])
    sampler = zdata.ShardedSampler(len(dataset), args.batch_size, rank, world, shuffle=False, drop_last=False)
    loader = zdata.create_loader(dataset, args.batch_size, sampler, args.workers, device.type == 'cuda')
    amp_dtype = torch.bfloat16 if args.amp_dtype == 'bfloat16' or device.type == 'cpu' else torch.float16

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if args.amp else nullcontext()

    bad = zdata.BadImageCounter()
    metrics = evaluate(model, loader, device, nn.CrossEntropyLoss(reduction='sum'), autocast, bad,
                       channels_last=args.channels_last, progress=rank == 0)
    result = {'model': name, 'checkpoint': args.checkpoint, 'data': args.data_dir or 'digits', 'split': args.split,
              'img_size': img_size, 'crop_pct': dc['crop_pct'], 'interpolation': dc['interpolation'],
              'top1': metrics['top1'], 'top5': metrics['top5'], 'loss': metrics['loss'], 'images': metrics['count'],
              'bad_images': bad.count}
    if rank == 0:
        print(f'zoo validate: {name} on {result["data"]}/{args.split} ({result["images"]} images, {img_size}px): '
              f'top-1 {result["top1"]:.2f}%, top-5 {result["top5"]:.2f}%, loss {result["loss"]:.4f}')
        if args.results_file:
            with open(args.results_file, 'w') as f:
                json.dump(result, f, indent=1)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    from .errors import run_command
    args = build_parser().parse_args(argv)
    try:
        return run_command('zoo validate', lambda: validate(args) and 0, verbose=args.verbose)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == '__main__':
    sys.exit(main())
