"""``zoo predict`` / ``tools/predict.py``: the top-k classes of your images, as a table, CSV and JSON.

    zoo predict --checkpoint output/run/best.safetensors photos/            # a zoo train checkpoint
    zoo predict --model efficientvit_m0 --pretrained cat.jpg dog.jpg        # ImageNet names (timm's ImageNetInfo)
    zoo predict --checkpoint m0.onnx --results-format csv json list.txt     # an exported file, in ONNX Runtime

What runs:

* a ``.safetensors`` / ``.pth`` written by ``zoo train`` names its architecture, classes and the data config it
  was trained with (its metadata), so nothing else is needed; the model and preprocessing are resolved exactly as
  ``zoo validate`` resolves them (its ``resolve_checkpoint`` / ``eval_data_config``), and the weights load strictly;
* ``--model NAME`` (zoo or timm) with its default pretrained weights (the default without ``--checkpoint``, as in
  timm's inference.py) or with a bare weights file (through the model's ``checkpoint_filter_fn``);
* a ``.onnx`` file runs in ONNX Runtime (CPU). ``zoo export`` stores the same metadata as a zoo checkpoint in the
  file's ``metadata_props`` (keys ``zoo_arch``, ``num_classes``, ``img_size``, ``classes``, ``data_config``,
  JSON values), so the preprocessing and class names travel with it. For another ONNX file give ``--model NAME``
  (its pretrained cfg) or ``--img-size`` / ``--mean`` / ``--std`` / ``--crop-pct`` / ``--interpolation``.

Inputs are image files, folders (searched recursively for image files) and text lists (``.txt`` / ``.lst``: one
path per line, relative to the list's folder; ``#`` comments). Images are decoded and transformed exactly as
``zoo validate`` does (PIL to RGB, albumentations resize + centre crop + normalise). An unreadable image is
reported and skipped (``--strict`` / ``--strict-data`` stops instead, writing nothing). The results table is
printed (``--no-console-results`` to silence) and written as CSV (one row per image, columns ``filename``, then
``label_i`` / ``index_i`` / ``prob_i`` for rank i = 0..k-1) and/or JSON (the model, preprocessing, and
``results`` and ``skipped`` lists), atomically; an interrupted run writes what it has to ``<file>.partial.<ext>``.
Flag names follow timm's inference.py where they overlap.
"""
import argparse
import csv
import io
import json
import os
import sys
import time
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import data as zdata  # noqa: E402

LIST_EXTENSIONS = ('.txt', '.lst')
RESULT_FORMATS = ('csv', 'json')
LABEL_TYPES = ('none', 'name', 'description', 'detailed')
ONNX_META_KEYS = ('zoo_arch', 'num_classes', 'img_size', 'classes', 'data_config')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='zoo predict', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('inputs', nargs='*', metavar='PATH', help='image files, folders (recursive) and .txt/.lst lists')
    p.add_argument('--data-dir', action='append', default=[], metavar='DIR', help='another input folder (timm name)')
    g = p.add_argument_group('model')
    g.add_argument('-m', '--model', default=None,
                   help='zoo or timm name (default: the one stored in a zoo checkpoint / ONNX file)')
    g.add_argument('--checkpoint', default=None,
                   help='zoo train checkpoint, weights file (.safetensors, .pth loaded weights-only) or .onnx')
    g.add_argument('--pretrained', action='store_true',
                   help="the model's default pretrained weights (the default when no --checkpoint is given)")
    g.add_argument('--num-classes', type=int, default=None, help='classifier size (default: checkpoint / model cfg)')
    g.add_argument('--class-map', default=None, metavar='FILE',
                   help='text file, one class name per line (index = line)')
    g = p.add_argument_group('preprocessing (default: the checkpoint\'s training data config, else the model cfg)')
    g.add_argument('--img-size', type=int, default=None, help='square input size')
    g.add_argument('--input-size', type=int, nargs=3, default=None, metavar=('C', 'H', 'W'))
    g.add_argument('--crop-pct', type=float, default=None)
    g.add_argument('--mean', type=float, nargs=3, default=None)
    g.add_argument('--std', type=float, nargs=3, default=None)
    g.add_argument('--interpolation', default=None)
    g = p.add_argument_group('running')
    g.add_argument('-b', '--batch-size', type=int, default=32)
    g.add_argument('-j', '--workers', type=int, default=2, help='image decoding processes (0: in this process)')
    g.add_argument('--amp', action='store_true', help='mixed precision (bf16 on CPU; --amp-dtype on GPU)')
    g.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    g.add_argument('--channels-last', action='store_true')
    g.add_argument('--device', default=None, help="'cpu' or 'cuda[:N]' (default: cuda when available)")
    g.add_argument('--threads', type=int, default=None, help='CPU threads for PyTorch / ONNX Runtime')
    g.add_argument('--strict', '--strict-data', dest='strict', action='store_true',
                   help='stop at the first unreadable image instead of skipping it')
    g.add_argument('--no-progress', action='store_true', help='no progress bar')
    g = p.add_argument_group('results')
    g.add_argument('--topk', type=int, default=5, help='classes per image')
    g.add_argument('--output-type', default='prob', choices=('prob', 'logit'), help='softmax probabilities or logits')
    g.add_argument('--label-type', default='description', choices=LABEL_TYPES,
                   help="class names: the checkpoint's classes, or ImageNet's name / description / detailed")
    g.add_argument('--include-index', action='store_true', help='class indices too (always when there are no names)')
    g.add_argument('--fullname', action='store_true',
                   help='absolute paths as file names (default: relative to the folder given, or as listed)')
    g.add_argument('--results-dir', default=None, help='folder for the results files (default: current folder)')
    g.add_argument('--results-file', default=None, help='results file name (default: <model>-<img size>)')
    g.add_argument('--results-format', nargs='+', default=['csv'], choices=RESULT_FORMATS)
    g.add_argument('--no-console-results', action='store_true', help='do not print the results table')
    return p


# ---------------------------------------------------------------------------------------------
# inputs

def collect_images(inputs: Sequence[str], fullname: bool = False) -> List[Tuple[str, str]]:
    """(path, name shown in the results) of every image in ``inputs``, in a stable order."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for dirpath, dirnames, files in os.walk(item, followlinks=True):
                dirnames.sort()
                found += [(os.path.join(dirpath, f), os.path.relpath(os.path.join(dirpath, f), item))
                          for f in sorted(files) if f.lower().endswith(zdata.IMG_EXTENSIONS)]
        elif os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            base = os.path.dirname(item)
            with open(item) as f:
                lines = [line.strip() for line in f]
            # a listed file that is missing is reported like an unreadable image, not fatal
            found += [(os.path.join(base, line), line) for line in lines if line and not line.startswith('#')]
        elif os.path.isfile(item):
            found.append((item, item))
        else:
            raise zdata.DataError(f'input {item!r} does not exist')
    if not found:
        raise zdata.DataError(f'no images ({", ".join(zdata.IMG_EXTENSIONS)}) in {", ".join(map(repr, inputs))}')
    if fullname:
        found = [(path, os.path.abspath(path)) for path, _ in found]
    return found


class ImageListDataset(zdata.ImageFolderDataset):
    """Images from a list; a sample's target is its position in the list, so results map back to files.

    Decoding and the skip-or-stop handling of unreadable files are ImageFolderDataset's, so an image here is
    exactly the tensor ``zoo validate`` makes of it."""

    def __init__(self, paths: Sequence[str], transform=None, strict: bool = False):  # no class folders to scan
        self.samples = [(path, i) for i, path in enumerate(paths)]
        self.transform, self.strict = transform, strict


# ---------------------------------------------------------------------------------------------
# models: PyTorch, ONNX Runtime

def _device(name: Optional[str]) -> torch.device:
    device = torch.device(name or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {name} given but no CUDA device is available')
    return device


class TorchPredictor:
    """A PyTorch model on ``device`` (AMP, channels-last as asked); called with a CPU batch, returns fp32 logits."""

    def __init__(self, model: torch.nn.Module, device: torch.device, amp: bool = False, amp_dtype: str = 'bfloat16',
                 channels_last: bool = False):
        self.model, self.device, self.channels_last = model.to(device).eval(), device, channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        dtype = torch.float16 if amp_dtype == 'float16' and device.type == 'cuda' else torch.bfloat16
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if amp else nullcontext

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.model(images).float().cpu()


class OnnxPredictor:
    """An ONNX Runtime session (zoo.export_onnx.ort_session: CPU, torch's thread count)."""

    def __init__(self, path: str):
        from .export_onnx import ort_session
        self.session = ort_session(path)
        self.input = self.session.get_inputs()[0]
        self.dtype = np.float16 if self.input.type == 'tensor(float16)' else np.float32

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input.name: images.numpy().astype(self.dtype)})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def metadata(self) -> dict:
        from .validate import _parse_meta
        return _parse_meta(dict(self.session.get_modelmeta().custom_metadata_map))

    def static_size(self) -> Optional[Tuple[int, int]]:
        h, w = self.input.shape[2:4]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def num_outputs(self) -> Optional[int]:
        n = self.session.get_outputs()[0].shape[-1]
        return n if isinstance(n, int) else None


def load_torch(args: argparse.Namespace):
    """(predictor, timm name, num classes, data config, class names or None) for a model name / checkpoint."""
    from .train import create_model, fit_state_dict
    from .validate import eval_data_config, resolve_checkpoint
    if not args.checkpoint:
        args.pretrained = True  # as timm's inference.py: a random classifier predicts nothing useful
    name, state, meta, cfg = resolve_checkpoint(args)
    num_classes = args.num_classes or meta.get('num_classes') or cfg.get('num_classes') or 1000
    dc = eval_data_config(args, meta, cfg)
    h, w = dc['input_size'][-2:]
    try:
        model = create_model(name, num_classes, h if h == w else None, pretrained=args.pretrained and not state)
    except (OSError, RuntimeError) as e:  # no network / no weights published for this name
        raise ValueError(f'cannot load the pretrained weights of {name} ({type(e).__name__}: {e}); '
                         'give --checkpoint FILE') from e
    if args.checkpoint:
        fit_state_dict(model, state, allow_new_head=False, source=args.checkpoint)
    predictor = TorchPredictor(model, _device(args.device), args.amp, args.amp_dtype, args.channels_last)
    classes = meta.get('classes') or (model.pretrained_cfg or {}).get('label_names')
    return predictor, name, num_classes, dc, classes


def load_onnx(args: argparse.Namespace):
    """The same for an ONNX file: preprocessing from its zoo metadata, else ``--model``'s cfg and the flags."""
    from .validate import eval_data_config
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'ONNX file {args.checkpoint!r} does not exist')
    if args.device and not args.device.startswith('cpu'):
        raise ValueError('ONNX files run in ONNX Runtime on the CPU; drop --device')
    predictor = OnnxPredictor(args.checkpoint)
    meta = predictor.metadata()
    cfg = {}
    if args.model:
        from timm.models import get_pretrained_cfg

        from .train import resolve_model
        found = get_pretrained_cfg(resolve_model(args.model).partition('.')[0])
        cfg = found.to_dict() if found is not None else {}
    elif 'data_config' not in meta:
        print(f'zoo predict: {args.checkpoint} has no zoo preprocessing metadata (not written by zoo export); '
              "using timm's defaults and the flags (give --model NAME for its cfg)", file=sys.stderr)
    static = predictor.static_size()
    if static and not (args.img_size or args.input_size or meta.get('img_size')):
        args.input_size = (3, *static)  # a fixed-size file: its own size
    dc = eval_data_config(args, meta, cfg)
    if static and tuple(dc['input_size'][-2:]) != tuple(static):
        raise ValueError(f'{args.checkpoint} takes {static[0]}x{static[1]} images, not '
                         f'{dc["input_size"][1]}x{dc["input_size"][2]}')
    num_classes = predictor.num_outputs() or meta.get('num_classes') or args.num_classes
    name = meta.get('zoo_arch') or os.path.splitext(os.path.basename(args.checkpoint))[0]
    return predictor, name, num_classes, dc, meta.get('classes')


def onnx_metadata(model: torch.nn.Module, img_size: Tuple[int, int]) -> Dict[str, str]:
    """What ``zoo predict`` reads from an exported classifier (the zoo checkpoint metadata schema), taken from
    the model's pretrained cfg: ``zoo export`` puts a zoo checkpoint's data config and classes there."""
    from timm.data import resolve_data_config
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    dc = resolve_data_config({'input_size': (3, *img_size)}, model=model)
    meta = {'zoo_arch': cfg.get('architecture'), 'num_classes': getattr(model, 'num_classes', None),
            'img_size': img_size[0] if img_size[0] == img_size[1] else None, 'classes': cfg.get('label_names'),
            'data_config': {k: list(v) if isinstance(v, tuple) else v for k, v in dc.items()}}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items() if v is not None}


def write_onnx_metadata(path: str, props: Dict[str, str]):
    """Set ``props`` in the ONNX file's ``metadata_props`` (external tensor data, if any, is left in place)."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in kept + list(props.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)


# ---------------------------------------------------------------------------------------------
# labels

def label_mapper(classes: Optional[List[str]], num_classes: int, label_type: str, class_map: Optional[str]):
    """index -> name: ``--class-map``, the checkpoint's classes, or ImageNet's (by the classifier's size)."""
    from timm.data import CustomDatasetInfo, DatasetInfoLabelMapper, ImageNetInfo, infer_imagenet_subset
    if label_type == 'none':
        return None
    if class_map:
        if not class_map.endswith('.txt') or not os.path.isfile(class_map):
            raise ValueError(f'--class-map {class_map!r}: give an existing .txt file, one class name per line')
        with open(class_map) as f:
            classes = [line.strip() for line in f if line.strip()]
    if classes:
        if len(classes) != num_classes:
            print(f'zoo predict: {len(classes)} class names for {num_classes} outputs; the others show as '
                  '<unmapped:INDEX>', file=sys.stderr)
        info = CustomDatasetInfo(label_names=list(classes))
        return DatasetInfoLabelMapper(info, label_type='name')
    subset = infer_imagenet_subset({'num_classes': num_classes})
    if subset is None:
        return None
    return DatasetInfoLabelMapper(ImageNetInfo(subset), label_type=label_type)


# ---------------------------------------------------------------------------------------------
# running and writing

def run(predictor, loader, topk: int, use_probs: bool, progress: bool, rows: list, skipped: list):
    """Fill ``rows`` with (position, top indices, top values) and ``skipped`` with (path, error), batch by batch."""
    from tqdm import tqdm
    for images, positions, bad in tqdm(loader, desc='predict', unit='batch', disable=not progress,
                                       dynamic_ncols=True, leave=False):
        skipped += bad
        if images is None:
            continue
        out = predictor(images)
        if use_probs:
            out = out.softmax(-1)
        values, indices = out.topk(min(topk, out.shape[-1]), dim=-1)
        rows += zip(positions.tolist(), indices.tolist(), values.tolist())


def result_records(rows, names: List[str], to_label, output_col: str, include_index: bool) -> List[dict]:
    records = []
    for position, indices, values in sorted(rows):
        topk = []
        for index, value in zip(indices, values):
            entry = {'index': index} if include_index or to_label is None else {}
            if to_label is not None:
                entry['label'] = to_label(index)
            entry[output_col] = value
            topk.append(entry)
        records.append({'filename': names[position], 'topk': topk})
    return records


def to_csv(records: List[dict]) -> bytes:
    """One row per image: filename, then ``label_i`` / ``index_i`` / ``prob_i`` (or ``logit_i``) per rank i."""
    fields = ['filename'] + [f'{key}_{i}' for i, entry in enumerate(records[0]['topk']) for key in entry] \
        if records else ['filename']
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in records:
        writer.writerow({'filename': r['filename'], **{f'{key}_{i}': value for i, entry in enumerate(r['topk'])
                                                       for key, value in entry.items()}})
    return buffer.getvalue().encode()


def results_path(args: argparse.Namespace, model_name: str, img_size: int) -> str:
    base = args.results_file or f'{model_name.replace("/", "_").replace(":", "_")}-{img_size}'
    stem, ext = os.path.splitext(base)
    base = stem if ext.lstrip('.') in RESULT_FORMATS else base
    return os.path.join(args.results_dir, base) if args.results_dir else base


def write_results(base: str, formats: Sequence[str], summary: dict, partial: bool = False) -> List[str]:
    from .train import atomic_write
    folder = os.path.dirname(os.path.abspath(base))
    os.makedirs(folder, exist_ok=True)
    written = []
    for fmt in formats:
        path = f'{base}.partial.{fmt}' if partial else f'{base}.{fmt}'
        data = to_csv(summary['results']) if fmt == 'csv' else json.dumps(summary, indent=1).encode()
        atomic_write(path, data)
        written.append(path)
    return written


def format_table(records: List[dict], output_col: str) -> str:
    """The results as aligned text: one row per image, one column per rank."""
    digits = 3 if output_col == 'prob' else 2

    def cell(entry):
        index = f'[{entry["index"]}] ' if 'label' in entry and 'index' in entry else ''
        return f'{index}{entry.get("label", entry.get("index"))} {entry[output_col]:.{digits}f}'
    k = max((len(r['topk']) for r in records), default=0)
    table = [['filename'] + [f'top-{i + 1}' for i in range(k)]]
    table += [[r['filename']] + [cell(e) for e in r['topk']] for r in records]
    widths = [max(len(row[c]) for row in table if c < len(row)) for c in range(k + 1)]
    return '\n'.join('  '.join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table)


def predict(args: argparse.Namespace) -> dict:
    """Run the whole job; returns the summary written as JSON (with the paths written under 'files')."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.topk < 1 or args.batch_size < 1:
        raise ValueError('--topk and --batch-size must be at least 1')
    images = collect_images(list(args.inputs) + list(args.data_dir), args.fullname)  # bad inputs fail before loading
    is_onnx = bool(args.checkpoint) and args.checkpoint.lower().endswith('.onnx')
    predictor, name, num_classes, dc, classes = (load_onnx if is_onnx else load_torch)(args)
    to_label = label_mapper(classes, num_classes, args.label_type, args.class_map)

    dataset = ImageListDataset([path for path, _ in images], strict=args.strict, transform=zdata.eval_transform(
        dc['input_size'], dc['mean'], dc['std'], dc['interpolation'], dc['crop_pct']))
    sampler = zdata.ShardedSampler(len(dataset), args.batch_size, shuffle=False, drop_last=False)
    loader = zdata.create_loader(dataset, args.batch_size, sampler, args.workers, pin_memory=False)
    output_col = args.output_type
    summary = {'model': name, 'checkpoint': args.checkpoint, 'runtime': 'onnxruntime' if is_onnx else 'pytorch',
               'data_config': {k: list(v) if isinstance(v, tuple) else v for k, v in dc.items()},
               'topk': min(args.topk, num_classes or args.topk), 'output_type': output_col}
    base = results_path(args, name, dc['input_size'][-1])
    rows, skipped = [], []
    names = [shown for _, shown in images]
    tic = time.perf_counter()
    try:
        run(predictor, loader, args.topk, output_col == 'prob', not args.no_progress, rows, skipped)
    except (Exception, KeyboardInterrupt) as e:
        # keep what was done, next to (never over) the results of a finished run; --strict means: stop, no results
        if rows and not isinstance(e, zdata.DataError):
            summary.update(results=result_records(rows, names, to_label, output_col, args.include_index),
                           skipped=[{'filename': p, 'error': err} for p, err in skipped], complete=False)
            kept = write_results(base, args.results_format, summary, partial=True)
            print(f'zoo predict: stopped after {len(rows)} images; their results are in {", ".join(kept)}',
                  file=sys.stderr)
        raise
    elapsed = time.perf_counter() - tic
    records = result_records(rows, names, to_label, output_col, args.include_index)
    summary.update(results=records, skipped=[{'filename': p, 'error': err} for p, err in skipped], complete=True,
                   images=len(records))
    summary['files'] = write_results(base, args.results_format, summary)
    if not args.no_console_results:
        print(format_table(records, output_col))
    for path, error in skipped[:10]:
        print(f'zoo predict: skipped unreadable image {path!r} ({error})', file=sys.stderr)
    if len(skipped) > 10:
        print(f'zoo predict: ... and {len(skipped) - 10} more unreadable images (all listed in the JSON results)',
              file=sys.stderr)
    h, w = dc['input_size'][-2:]
    print(f'zoo predict: {name} ({summary["runtime"]}, {h}x{w}) on {len(records)} images '
          f'({len(records) / max(elapsed, 1e-9):.1f} img/s), {len(skipped)} unreadable skipped; '
          f'wrote {", ".join(summary["files"])}')
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.inputs and not args.data_dir:
        build_parser().error('give at least one image, folder or list file')
    try:
        summary = predict(args)
    except (ValueError, FileNotFoundError) as e:  # DataError is a ValueError
        print(f'zoo predict: error: {e}', file=sys.stderr)
        return 2
    if not summary['results']:
        print('zoo predict: error: none of the images could be read', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
