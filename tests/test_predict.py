"""zoo predict on data the project makes: a short digits training run written out as PNG files (zoo digits).

Its checkpoint's predictions must match zoo validate's accuracy on the same images exactly (same decoding,
same transform), the CSV / JSON must be well formed, the ONNX file exported from it must give the same top-k
(preprocessing read back from the file's metadata), and unreadable images are skipped or, with --strict,
stop the run without writing results.
"""
import csv
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_train import train
from timm.models import get_pretrained_cfg

from zoo import data as zdata
from zoo import predict as zpredict
from zoo import validate as zvalidate

TOP5 = ['label_0', 'prob_0', 'label_1', 'prob_1', 'label_2', 'prob_2', 'label_3', 'prob_3', 'label_4', 'prob_4']


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
    """A few dozen steps of test_convnext on the digits (32 px): its run directory."""
    out = tmp_path_factory.mktemp('digits_run')
    train(out, '--model', 'test_convnext', '-b', '32', '--epochs', '2', '--limit-train-batches', '12', '--lr', '3e-3',
          '--warmup-epochs', '0')
    return out


@pytest.fixture(scope='module')
def digits_folder(tmp_path_factory):
    """The digits validation split as DIR/val/<class>/<index>.png."""
    root = tmp_path_factory.mktemp('digits_png')
    assert zdata.write_digits(str(root)) == 364
    return root


def predict(*argv):
    return zpredict.predict(zpredict.build_parser().parse_args(['-j', '0', '--no-progress', *map(str, argv)]))


def accuracy(summary):
    """(top-1, top-5) in % against the class folder each image sits in."""
    truth = [r['filename'].split(os.sep)[0] for r in summary['results']]
    top = [[e['label'] for e in r['topk']] for r in summary['results']]
    return (100.0 * np.mean([t == p[0] for t, p in zip(truth, top)]),
            100.0 * np.mean([t in p for t, p in zip(truth, top)]))


def test_checkpoint_predictions_agree_with_validate(digits_run, digits_folder, tmp_path, capsys):
    ckpt = digits_run / 'last.safetensors'
    summary = predict('--checkpoint', ckpt, digits_folder / 'val', '--results-dir', tmp_path, '--results-format',
                      'csv', 'json', '-b', '50')
    table = capsys.readouterr().out
    assert summary['model'] == 'test_convnext' and summary['data_config']['input_size'] == [3, 32, 32]
    top1, top5 = accuracy(summary)
    assert top1 > 60.0  # mostly right: chance is 10%
    for data_dir in (None, str(digits_folder)):  # the in-memory digits, and the same images as files
        args = ['--checkpoint', str(ckpt), '-b', '50', '-j', '0'] + (['--data-dir', data_dir] if data_dir else [])
        report = zvalidate.validate(zvalidate.build_parser().parse_args(args))
        assert (top1, top5) == pytest.approx((report['top1'], report['top5']), abs=1e-9)

    # the table on the terminal: one row per image, top-5 class names and probabilities
    lines = table.strip().splitlines()
    assert lines[0].split() == ['filename', 'top-1', 'top-2', 'top-3', 'top-4', 'top-5']
    first = summary['results'][0]
    assert lines[1].split()[:3] == [first['filename'], first['topk'][0]['label'], f'{first["topk"][0]["prob"]:.3f}']

    # CSV: a header and one row per image; 5 distinct class names per row with falling probabilities
    with open(tmp_path / 'test_convnext-32.csv', newline='') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ['filename'] + TOP5 and len(rows) == 364
    for row in rows:
        labels, probs = [row[f'label_{i}'] for i in range(5)], [float(row[f'prob_{i}']) for i in range(5)]
        assert len(set(labels)) == 5 and set(labels) <= set(map(str, range(10)))
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # JSON: the same results, the preprocessing, nothing skipped
    with open(tmp_path / 'test_convnext-32.json') as f:
        written = json.load(f)
    assert written['complete'] and written['images'] == 364 and written['skipped'] == []
    assert written['results'] == summary['results']
    assert written['data_config']['crop_pct'] == get_pretrained_cfg('test_convnext').crop_pct  # the model's cfg
    assert [r['filename'] for r in written['results']] == [r['filename'] for r in rows]


def test_onnx_file_gives_the_same_topk(digits_run, digits_folder, tmp_path):
    from zoo.export_onnx import export
    onnx_path = str(tmp_path / 'digits.onnx')
    # the TorchScript exporter: 1 s here against ~40 s for the default dynamo one; the metadata step is the same
    assert export('test_convnext', onnx_path, checkpoint=str(digits_run / 'best.safetensors'), exporter='torchscript',
                  runs=0, log=lambda *a: None).ok
    images = [str(digits_folder / 'val' / str(c)) for c in range(10)]
    common = ['--results-dir', tmp_path, '--results-format', 'json', '--topk', '3', *images]
    torch_run = predict('--checkpoint', digits_run / 'best.safetensors', '--results-file', 'pt', *common)
    onnx_run = predict('--checkpoint', onnx_path, '--results-file', 'ort', *common)
    assert onnx_run['runtime'] == 'onnxruntime' and onnx_run['model'] == 'test_convnext'
    assert onnx_run['data_config'] == torch_run['data_config']  # read back from the file's metadata_props
    assert len(onnx_run['results']) == len(torch_run['results']) == 364
    for a, b in zip(torch_run['results'], onnx_run['results']):
        assert a['filename'] == b['filename']
        assert [e['label'] for e in a['topk']] == [e['label'] for e in b['topk']]
        assert [e['prob'] for e in a['topk']] == pytest.approx([e['prob'] for e in b['topk']], abs=1e-5)


def test_unreadable_images_are_skipped_or_stop_with_strict(digits_run, digits_folder, tmp_path, capsys):
    folder = tmp_path / 'mixed'
    (folder / 'nested').mkdir(parents=True)
    good = sorted((digits_folder / 'val' / '7').iterdir())[:3]
    for i, path in enumerate(good):
        (folder / ('nested' if i else '') / path.name).write_bytes(path.read_bytes())
    (folder / 'broken.png').write_bytes(b'not a png')
    (folder / 'notes.md').write_text('not an image: ignored in folders')
    listing = tmp_path / 'list.txt'
    listing.write_text(f'# one listed file is missing\n{good[0]}\nmissing.png\n')
    args = ['--checkpoint', digits_run / 'last.safetensors', folder, listing, '--results-dir', tmp_path / 'res',
            '--results-format', 'json', '--no-console-results', '-b', '2']
    summary = predict(*args)
    assert [r['filename'] for r in summary['results']] == [good[0].name, 'nested/' + good[1].name,
                                                         'nested/' + good[2].name, str(good[0])]
    assert sorted(os.path.basename(s['filename']) for s in summary['skipped']) == ['broken.png', 'missing.png']
    assert 'skipped unreadable image' in capsys.readouterr().err
    assert zpredict.main(list(map(str, args + ['--strict', '--results-file', 'strict']))) == 2
    assert 'cannot read image' in capsys.readouterr().err
    assert not (tmp_path / 'res' / 'strict.json').exists()


def test_interrupted_run_keeps_what_it_did(digits_run, digits_folder, tmp_path, monkeypatch):
    calls = []
    real_call = zpredict.TorchPredictor.__call__

    def interrupt_on_third_batch(self, images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_call(self, images)

    monkeypatch.setattr(zpredict.TorchPredictor, '__call__', interrupt_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        predict('--checkpoint', digits_run / 'last.safetensors', digits_folder / 'val' / '1', '-b', '8',
                '--results-dir', tmp_path, '--results-file', 'run', '--results-format', 'csv', 'json')
    with open(tmp_path / 'run.partial.json') as f:
        partial = json.load(f)
    assert not partial['complete'] and len(partial['results']) == 16
    assert (tmp_path / 'run.partial.csv').is_file() and not (tmp_path / 'run.json').exists()


def test_imagenet_head_gets_imagenet_names(digits_folder, tmp_path):
    import timm
    torch.manual_seed(0)
    weights = tmp_path / 'imagenet_head.safetensors'  # a bare weights file: no zoo metadata
    save_file(timm.create_model('test_convnext').state_dict(), str(weights))
    from timm.data import ImageNetInfo
    info = ImageNetInfo('imagenet-1k')
    images = sorted((digits_folder / 'val' / '3').iterdir())[:4]
    for label_type, name_of in (('description', info.index_to_description), ('name', info.index_to_label_name)):
        summary = predict('--model', 'test_convnext', '--checkpoint', weights, '--img-size', '32', *images,
                          '--label-type', label_type, '--include-index', '--results-dir', tmp_path,
                          '--no-console-results')
        entries = [e for r in summary['results'] for e in r['topk']]
        assert len(entries) == 20 and all(e['label'] == name_of(e['index']) for e in entries)


def test_clear_errors(digits_run, tmp_path, capsys):
    ckpt = str(digits_run / 'last.safetensors')
    assert zpredict.main(['--checkpoint', ckpt, str(tmp_path / 'nowhere')]) == 2
    assert "input '" in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert zpredict.main(['--checkpoint', ckpt, str(tmp_path / 'empty')]) == 2
    assert 'no images' in capsys.readouterr().err
    image = tmp_path / 'x.png'
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert zpredict.main(['--model', 'test_vit', '--checkpoint', ckpt, str(image)]) == 2
    assert 'checkpoint of test_convnext, not of test_vit' in capsys.readouterr().err
