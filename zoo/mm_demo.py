"""``zoo mm-demo`` / ``tools/mm_demo.py``: draw an mmdetection / mmsegmentation model's prediction on images.

    zoo mm-demo CONFIG CHECKPOINT street.jpg photos/ --out-dir demo/        # one PNG per image
    python tools/mm_demo.py configs/mmseg/... work_dirs/.../iter_160000.pth scene.png --opacity 0.6

The config's ``default_scope`` says which it is (mmdet: boxes, with masks for instance segmentation; mmseg: the
segmentation map over the image), and the picture is drawn by mmdet's ``DetLocalVisualizer`` / mmseg's
``SegLocalVisualizer`` (they work with mmcv-lite) and written as ``OUT_DIR/<image path>.png`` (atomically), the
size of the input image. The class names come from the checkpoint (mmengine stores the training set's
``dataset_meta``), else from the config's test dataset.

The checkpoint is loaded with ``torch.load(weights_only=True)`` (zoo.mm allow-lists what mmengine writes) and
strictly: a checkpoint of another model or backbone is refused with the missing / unexpected / reshaped keys
named, instead of mmengine's warning and a half-initialised model. The backbone's own pretrained weights are not
fetched (the checkpoint holds them).
"""
import argparse
import os
import sys
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch

SEG_MODEL_TYPES = ('EncoderDecoder', 'CascadeEncoderDecoder')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='zoo mm-demo', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='mmdet / mmseg config file (configs/mmdet/..., configs/mmseg/...)')
    p.add_argument('checkpoint', help='checkpoint written by tools/mm_train.py (mmengine .pth)')
    p.add_argument('inputs', nargs='+', metavar='PATH', help='image files, folders (recursive), .txt/.lst lists')
    p.add_argument('--out-dir', default='demo', help='where the PNGs go')
    p.add_argument('--score-thr', type=float, default=0.3, help='detection: boxes scoring below are not drawn')
    p.add_argument('--opacity', type=float, default=0.5, help='segmentation map / mask opacity')
    p.add_argument('--device', default=None, help="'cpu' or 'cuda[:N]' (default: cuda when available)")
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--strict', action='store_true', help='stop at the first unreadable image instead of skipping')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE', help='override config entries')
    return p


# ---------------------------------------------------------------------------------------------
# model

def task_of(cfg) -> str:
    """'det' or 'seg' from the config's default scope (its model type when the scope is missing)."""
    scope = cfg.get('default_scope')
    if scope in ('mmdet', 'mmseg'):
        return scope[2:]
    return 'seg' if cfg.model.get('type') in SEG_MODEL_TYPES else 'det'


def load_config(path: str, cfg_options: List[str]):
    from mmengine.config import Config, DictAction

    import zoo.mm  # noqa: F401  (mmcv-lite fallback and registrations, before mmdet / mmseg models import)
    from zoo.mm.config_utils import complete_config
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        namespace = argparse.Namespace()
        DictAction(['--cfg-options'], 'options')(None, namespace, cfg_options)
        cfg.merge_from_dict(namespace.options)
    backbone = cfg.model.get('backbone') or {}
    if 'pretrained' in backbone:
        backbone['pretrained'] = False  # the checkpoint holds the backbone too: no download
    backbone.pop('init_cfg', None)
    complete_config(cfg)
    return cfg


def read_checkpoint(path: str):
    """(state dict, mmengine meta) of an mmengine checkpoint, loaded without executing pickled code."""
    from zoo.mm import allow_mmengine_checkpoints
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    allow_mmengine_checkpoints()
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle / format errors: one clear line)
        raise ValueError(f'{path!r} is not a checkpoint torch can load safely ({type(e).__name__}: '
                         f'{str(e).splitlines()[0][:300]})') from e
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path!r} holds no state dict')
    state = ckpt.get('state_dict', ckpt)
    state = {k.removeprefix('module.'): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return state, ckpt.get('meta') or {}


def load_strictly(model: torch.nn.Module, state: Dict[str, torch.Tensor], checkpoint: str, config: str):
    """torch's strict load; its report (missing, unexpected, size mismatches: every key) shortened per kind."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        kinds = [part.strip() for part in str(e).split('\n\t')[1:]]
        short = '; '.join(k if len(k) < 300 else k[:300] + ' ...' for k in kinds) or str(e)[:600]
        raise ValueError(f'{checkpoint} does not match {config} (a checkpoint of another model, backbone or '
                         f'number of classes?): {short}') from None


def build_model(config: str, checkpoint: str, device: str, cfg_options: Optional[List[str]] = None):
    """(model in eval mode with the checkpoint loaded, 'det' or 'seg')."""
    cfg = load_config(config, cfg_options or [])
    task = task_of(cfg)
    state, meta = read_checkpoint(checkpoint)
    with warnings.catch_warnings():  # 'checkpoint is None, COCO classes': the classes are set below
        warnings.simplefilter('ignore')
        if task == 'det':
            from mmdet.apis import init_detector
            model = init_detector(cfg, None, device='cpu')
        else:
            from mmseg.apis import init_model
            model = init_model(cfg, None, device='cpu')
    load_strictly(model, state, checkpoint, config)
    dataset_meta = {k.lower(): v for k, v in (meta.get('dataset_meta') or {}).items()}
    if dataset_meta.get('classes'):
        palette = dataset_meta.get('palette') or (getattr(model, 'dataset_meta', None) or {}).get('palette')
        model.dataset_meta = dict(dataset_meta, **({'palette': palette} if palette is not None else {}))
    elif task == 'seg':
        model.dataset_meta = _config_metainfo(cfg)
    return model.to(device).eval(), task


def _config_metainfo(cfg) -> dict:
    """The test dataset's classes and palette, as the config declares them (without reading the data)."""
    from mmengine.registry import DATASETS
    dataset = dict(cfg.test_dataloader.dataset, lazy_init=True)
    return dict(DATASETS.build(dataset).metainfo)


# ---------------------------------------------------------------------------------------------
# drawing

def draw(model, task: str, image_path: str, score_thr: float, opacity: float):
    """(RGB picture with the prediction drawn, one-line summary) for one image file."""
    import mmcv
    image = mmcv.imread(image_path, channel_order='rgb')
    if image is None:
        raise ValueError('not an image')
    if task == 'det':
        from mmdet.apis import inference_detector
        from mmdet.visualization import DetLocalVisualizer
        result = inference_detector(model, image_path)
        visualizer = DetLocalVisualizer(name=f'zoo_mm_demo_{id(model)}', alpha=opacity)
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('prediction', image, data_sample=result, draw_gt=False, show=False,
                                  pred_score_thr=score_thr)
        summary = _det_summary(result, model.dataset_meta['classes'], score_thr)
    else:
        from mmseg.apis import inference_model
        from mmseg.visualization import SegLocalVisualizer
        result = inference_model(model, image_path)
        visualizer = SegLocalVisualizer(name=f'zoo_mm_demo_{id(model)}', alpha=opacity)
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('prediction', image, data_sample=result, draw_gt=False, show=False)
        summary = _seg_summary(result, model.dataset_meta['classes'])
    return visualizer.get_image(), summary


def _det_summary(result, classes, score_thr: float) -> str:
    pred = result.pred_instances
    keep = pred.scores >= score_thr
    found = [f'{classes[int(label)]} {float(score):.2f}' for label, score in zip(pred.labels[keep], pred.scores[keep])]
    return f'{len(found)} detections >= {score_thr}' + (f': {", ".join(found[:8])}' if found else '')


def _seg_summary(result, classes) -> str:
    seg = result.pred_sem_seg.data.squeeze(0).cpu().numpy()
    labels, counts = np.unique(seg, return_counts=True)
    parts = [f'{classes[int(c)] if int(c) < len(classes) else int(c)} {100 * n / seg.size:.1f}%'
             for c, n in sorted(zip(labels, counts), key=lambda t: -t[1])]
    return 'pixels: ' + ', '.join(parts)


def save_png(path: str, image: np.ndarray):
    import cv2

    from .train import atomic_write
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f'cannot encode {path} as PNG')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, encoded.tobytes())


def run(args: argparse.Namespace) -> Dict[str, str]:
    """Draw every input; returns {image path: PNG written}. Unreadable images are reported and skipped."""
    from .predict import _device, collect_images
    if args.threads:
        torch.set_num_threads(args.threads)
    images = collect_images(args.inputs)
    model, task = build_model(args.config, args.checkpoint, str(_device(args.device)), args.cfg_options)
    written, skipped = {}, []
    for path, shown in images:
        inside = not os.path.isabs(shown) and '..' not in shown.split(os.sep)  # else: flat, by its file name
        out = os.path.join(args.out_dir, os.path.splitext(shown if inside else os.path.basename(shown))[0] + '.png')
        try:
            picture, summary = draw(model, task, path, args.score_thr, args.opacity)
        except Exception as e:  # noqa: BLE001  (a bad file must not stop the others; --strict does)
            if args.strict:
                raise ValueError(f'cannot read or draw {path!r}: {type(e).__name__}: {e}') from e
            skipped.append(path)
            print(f'zoo mm-demo: skipped {path!r} ({type(e).__name__}: {e})', file=sys.stderr)
            continue
        save_png(out, picture)
        written[path] = out
        print(f'{out}: {summary}')
    print(f'zoo mm-demo: {task} model, {len(written)} pictures in {args.out_dir}, {len(skipped)} images skipped')
    return written


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f'zoo mm-demo: error: {e}', file=sys.stderr)
        return 2
    return 0 if written else 1


if __name__ == '__main__':
    sys.exit(main())
