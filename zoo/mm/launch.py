"""Thin launchers over mmengine's Runner for mmdet / mmseg configs with zoo backbones.

    python tools/mm_train.py CONFIG [--work-dir DIR] [--amp] [--resume [CKPT]] [--cfg-options k=v ...]
    python tools/mm_test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]

Multi-GPU: ``torchrun --nproc_per_node=N tools/mm_train.py CONFIG --launcher pytorch``.
``zoo.mm`` is imported first (mmcv-lite fallback, safe checkpoint loading, registrations), and the
backbone-dependent numbers the config leaves ``None`` are filled in (:mod:`zoo.mm.config_utils`).
"""
import argparse
import os
import os.path as osp
from typing import List, Optional


def _common_args(parser: argparse.ArgumentParser):
    parser.add_argument('config', help='config file (configs/mmdet/... or configs/mmseg/...)')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=_DictAction, default={},
                        help='override config entries, e.g. model.backbone.pretrained=/path/to/weights.pth')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


class _DictAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def _load_config(args):
    from mmengine.config import Config

    import zoo.mm  # noqa: F401  (before mmdet/mmseg models are imported)
    from zoo.mm.config_utils import complete_config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    complete_config(cfg)
    cfg.launcher = args.launcher
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def train(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Train an mmdet / mmseg model with a zoo backbone')
    _common_args(parser)
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CKPT, or from the latest checkpoint in the work dir when no path is given')
    args = parser.parse_args(argv)
    cfg = _load_config(args)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
            raise SystemExit(f'--amp: optim_wrapper type is already {cfg.optim_wrapper.type}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    from mmengine.runner import Runner
    Runner.from_cfg(cfg).train()
    return 0


def test(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Evaluate an mmdet / mmseg checkpoint with a zoo backbone')
    parser.add_argument('checkpoint', help='checkpoint written by mm_train (loaded with torch weights_only=True)')
    _common_args(parser)
    args = parser.parse_args(argv)
    cfg = _load_config(args)
    cfg.load_from = args.checkpoint
    from mmengine.runner import Runner
    Runner.from_cfg(cfg).test()
    return 0
