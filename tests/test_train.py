"""zoo train / zoo validate on the embedded digits set and tiny ImageFolders, with timm's tiny test models.

The kill-and-resume test SIGKILLs a real training process in the middle of an epoch; the DDP test starts
two gloo processes with torch.distributed.run. Everything else runs in this process.
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from zoo import train as ztrain
from zoo import validate as zvalidate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--model', 'test_vit', '--img-size', '32', '-b', '16', '--workers', '0', '--no-progress']
SUB_ENV = dict(os.environ, OMP_NUM_THREADS='1', NO_ALBUMENTATIONS_UPDATE='1', WANDB_MODE='offline')


def train(out, *extra):
    assert ztrain.main(TINY + ['--output', str(out)] + [str(e) for e in extra]) == 0
    with open(os.path.join(out, 'results.json')) as f:
        return json.load(f)


def same_weights(path_a, path_b):
    a, b = load_file(path_a), load_file(path_b)
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope='module')
def learned(tmp_path_factory):
    """A few dozen steps of test_convnext on digits; (results, run_dir)."""
    out = tmp_path_factory.mktemp('learn')
    result = train(out, '--model', 'test_convnext', '-b', '32', '--epochs', '2', '--limit-train-batches', '12',
                   '--lr', '3e-3', '--warmup-epochs', '0')
    return result, out


def test_short_run_learns(learned):
    result, out = learned
    with open(out / 'log.json') as f:
        history = json.load(f)
    assert len(history) == 2
    assert history[1]['train_loss'] < history[0]['train_loss']
    assert result['last_top1'] > 40.0  # chance is 10%
    for name in ('last.safetensors', 'last.state.pt', 'best.safetensors', 'epoch-001.safetensors', 'summary.csv',
                 'curves.png', 'args.yaml'):
        assert (out / name).is_file(), name
    with safe_open(str(out / 'last.safetensors'), 'pt') as f:
        assert json.loads(f.metadata()['classes']) == [str(i) for i in range(10)]


def test_validate_reproduces_train_accuracy(learned):
    result, out = learned
    report = zvalidate.validate(zvalidate.build_parser().parse_args(
        ['--checkpoint', str(out / 'last.safetensors'), '-b', '50', '-j', '0']))
    assert report['model'] == 'test_convnext' and report['img_size'] == 32
    assert report['top1'] == pytest.approx(result['last_top1'], abs=1e-9)
    assert report['top5'] == pytest.approx(result['last_top5'], abs=1e-9)


def test_kill_mid_epoch_and_resume_is_bit_identical(tmp_path):
    args = TINY + ['--epochs', '2', '--limit-train-batches', '3', '--limit-val-batches', '1', '--deterministic',
                   '--mixup', '0.8', '--cutmix', '1.0', '--model-ema', '--model-ema-decay', '0.9', '--drop-path',
                   '0.1', '--save-every-steps', '2']
    killed = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'train.py'), *args, '--output',
                             str(tmp_path / 'killed'), '--kill-after-steps', '5'], env=SUB_ENV, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL after update 5 (epoch 1, step 2 of 3)
    state = torch.load(tmp_path / 'killed' / 'last.state.pt', weights_only=True)
    assert (state['epoch'], state['step_in_epoch'], state['num_updates']) == (1, 1, 4)
    assert ztrain.main(['--resume', str(tmp_path / 'killed'), '--workers', '0']) == 0
    ztrain.main(args + ['--output', str(tmp_path / 'straight')])
    assert same_weights(tmp_path / 'killed' / 'last.safetensors', tmp_path / 'straight' / 'last.safetensors') == 0
    resumed = torch.load(tmp_path / 'killed' / 'last.state.pt', weights_only=True)
    straight = torch.load(tmp_path / 'straight' / 'last.state.pt', weights_only=True)
    assert all(torch.equal(resumed['ema'][k], straight['ema'][k]) for k in straight['ema'])
    def results(history):  # same losses and accuracies, epoch by epoch; only the speed differs
        return [{k: v for k, v in row.items() if k != 'train_img_s'} for row in history]
    assert results(resumed['history']) == results(straight['history'])


@pytest.mark.slow  # two fresh processes importing torch: ~25 s idle, ~50 s on a loaded CI machine
def test_two_process_gloo_matches_one_process(tmp_path):
    common = TINY + ['--epochs', '1', '--limit-train-batches', '2', '--limit-val-batches', '2', '--smoothing', '0',
                     '--warmup-epochs', '0', '--deterministic']
    common[common.index('-b') + 1] = '8'
    ddp = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
                          str(29500 + os.getpid() % 1000), os.path.join(REPO, 'tools', 'train.py'), *common,
                          '--output', str(tmp_path / 'ddp')], env=SUB_ENV, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    common[common.index('-b') + 1] = '16'  # the same global batch in one process
    single = train(tmp_path / 'single', *common[len(TINY):])
    assert same_weights(tmp_path / 'ddp' / 'last.safetensors', tmp_path / 'single' / 'last.safetensors') < 1e-4
    with open(tmp_path / 'ddp' / 'results.json') as f:
        assert json.load(f)['last_top1'] == pytest.approx(single['last_top1'])


def _image_folder(root, classes=('cat', 'dog'), per_class=6, size=20, corrupt=0):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for c, name in enumerate(classes):
            os.makedirs(root / split / name, exist_ok=True)
            for i in range(per_class):
                pixels = (rng.random((size, size, 3)) * 80 + 120 * c).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f'{i}.png')
        for i in range(corrupt):
            (root / split / classes[0] / f'broken{i}.jpg').write_bytes(b'not a jpeg at all')
    return root


def test_image_folder_skips_corrupt_images_with_one_warning(tmp_path):
    data = _image_folder(tmp_path / 'data', corrupt=2)
    with pytest.warns(UserWarning, match='skipping unreadable image') as record:
        result = train(tmp_path / 'run', '--data-dir', data, '-b', '2', '--epochs', '1', '--amp', '--model-ema')
    assert sum('skipping unreadable image' in str(w.message) for w in record) == 1
    assert result['bad_images'] == 4  # 2 in train, 2 in val
    assert ztrain.main(TINY + ['--data-dir', str(data), '-b', '4', '--epochs', '1', '--strict-data',
                               '--output', str(tmp_path / 'strict')]) == 2


def test_fine_tune_from_checkpoint_with_new_head(tmp_path, learned):
    _, out = learned
    data = _image_folder(tmp_path / 'data', classes=('a', 'b', 'c'))
    result = train(tmp_path / 'ft', '--model', 'test_convnext', '--data-dir', data, '-b', '6', '--epochs', '1',
                   '--pretrained-path', out / 'last.safetensors', '--layer-decay', '0.8')
    assert result['epochs'] == 1
    head = load_file(tmp_path / 'ft' / 'last.safetensors')['head.fc.weight']
    assert head.shape[0] == 3
    # the data has 3 classes, the checkpoint 10: validate says so instead of guessing
    args = ['--checkpoint', str(out / 'last.safetensors'), '--data-dir', str(data), '-j', '0']
    assert zvalidate.main(args) == 2
    with pytest.raises(ValueError, match='predicts 10 classes'):
        zvalidate.validate(zvalidate.build_parser().parse_args(args))


def test_clear_errors(tmp_path, learned):
    _, out = learned
    empty = tmp_path / 'empty'
    (empty / 'train').mkdir(parents=True)
    errors = {
        'does not exist': ['--data-dir', str(tmp_path / 'missing')],
        'no class sub-folders': ['--data-dir', str(empty)],
        'unknown model': ['--model', 'no_such_model_xyz'],
        'cannot take 8x8': ['--model', 'test_convnext', '--img-size', '8'],
    }
    for message, extra in errors.items():
        with pytest.raises(ValueError, match=message):
            ztrain.Trainer(ztrain.parse_args(TINY + ['--output', str(tmp_path / 'x')] + extra))
    with pytest.raises(ValueError, match='checkpoint of test_convnext, not of test_vit'):
        zvalidate.validate(zvalidate.build_parser().parse_args(
            ['--model', 'test_vit', '--checkpoint', str(out / 'last.safetensors'), '-j', '0']))
    # a checkpoint without zoo metadata for another architecture: key mismatch, named as such
    bare = tmp_path / 'bare.pth'
    torch.save(load_file(out / 'last.safetensors'), bare)
    with pytest.raises(ValueError, match='another architecture'):
        zvalidate.validate(zvalidate.build_parser().parse_args(['--model', 'test_vit', '--checkpoint', str(bare),
                                                                '--img-size', '32', '-j', '0']))
    with pytest.raises(FileNotFoundError):
        ztrain.Trainer(ztrain.parse_args(['--resume', str(tmp_path / 'nothing')]))


def test_recipes_parse_for_every_variant():
    import yaml
    configs = sorted(glob.glob(os.path.join(REPO, 'configs', 'train', '*.yaml')))
    assert configs, 'no training recipes'
    for path in configs:
        with open(path) as f:
            variants = list((yaml.safe_load(f) or {}).get('variants') or {})
        for variant in variants or [None]:
            args = ztrain.parse_args(['--config', path] + (['--model', variant] if variant else []))
            assert args.epochs >= 100 and args.opt, (path, variant)


def test_zoo_model_by_plain_name(tmp_path):
    import zoo
    if 'zoo_efficientvit_m0' not in zoo.list_models():
        pytest.skip('efficientvit not registered')
    result = train(tmp_path, '--model', 'efficientvit_m0', '-b', '8', '--epochs', '1', '--limit-train-batches', '2',
                   '--limit-val-batches', '1', '--channels-last', '--grad-checkpointing')
    assert result['model'] == 'zoo_efficientvit_m0'
    report = zvalidate.validate(zvalidate.build_parser().parse_args(
        ['--checkpoint', str(tmp_path / 'last.safetensors'), '-j', '0', '-b', '128']))
    assert report['model'] == 'zoo_efficientvit_m0' and report['img_size'] == 32


# ---------------------------------------------------------------------------------------------
# a run's files after kills, copies and misuse

FAST = ['--epochs', '2', '--limit-train-batches', '1', '--limit-val-batches', '1', '-b', '8', '--deterministic',
        '--warmup-epochs', '0']


class InjectedKill(Exception):
    pass


def check_run_consistent(run_dir, epochs):
    """Every file agrees with results.json / the state: best epoch, epoch files, summary rows, last weights."""
    with open(os.path.join(run_dir, 'results.json')) as f:
        result = json.load(f)
    state = torch.load(os.path.join(run_dir, 'last.state.pt'), weights_only=True)
    assert result['epochs'] == epochs and state['epoch'] == epochs
    with safe_open(os.path.join(run_dir, 'best.safetensors'), 'pt') as f:
        assert json.loads(f.metadata()['epoch']) == result['best_epoch'] == state['best']['epoch']
    best_epoch_file = os.path.join(run_dir, f'epoch-{result["best_epoch"]:03d}.safetensors')
    assert same_weights(os.path.join(run_dir, 'best.safetensors'), best_epoch_file) == 0
    last = load_file(os.path.join(run_dir, 'last.safetensors'))
    assert all(torch.equal(last[k], state['model'][k]) for k in last)
    for epoch in range(epochs):
        assert os.path.isfile(os.path.join(run_dir, f'epoch-{epoch:03d}.safetensors')), epoch
    with open(os.path.join(run_dir, 'summary.csv')) as f:
        assert [row.split(',')[0] for row in f.read().splitlines()[1:]] == [str(e) for e in range(epochs)]
    assert not [n for n in os.listdir(run_dir) if '.tmp' in n]
    return result


def test_a_kill_after_any_write_is_repaired_by_resume(tmp_path, monkeypatch):
    """A failure injected after each file write of the last epoch (and of the run's end): --resume ends with the
    same files as an uninterrupted run, and consistent ones."""
    written = []
    real_write = ztrain.atomic_write

    def recording_write(path, data):
        real_write(path, data)
        written.append(os.path.basename(path))
    monkeypatch.setattr(ztrain, 'atomic_write', recording_write)
    train(tmp_path / 'straight', *FAST)
    straight = check_run_consistent(tmp_path / 'straight', 2)
    last_epoch_start = [i for i, n in enumerate(written) if n == 'last.state.pt'][-1]
    points = range(last_epoch_start, len(written))
    assert len(points) >= 6, written  # state, last, epoch file, (best), summary, log, results, curves

    for kill_after in points:
        count = [0]

        def failing_write(path, data, kill_after=kill_after):
            real_write(path, data)
            count[0] += 1
            if count[0] == kill_after + 1:
                raise InjectedKill(os.path.basename(path))
        monkeypatch.setattr(ztrain, 'atomic_write', failing_write)
        run = tmp_path / f'killed{kill_after}'
        with pytest.raises(InjectedKill):
            ztrain.Trainer(ztrain.parse_args(TINY + ['--output', str(run)] + FAST)).fit()
        monkeypatch.setattr(ztrain, 'atomic_write', real_write)
        assert ztrain.main(['--resume', str(run), '--workers', '0']) == 0, written[kill_after]
        resumed = check_run_consistent(run, 2)
        assert resumed['best_epoch'] == straight['best_epoch'] and resumed['last_top1'] == straight['last_top1']
        for name in ('last.safetensors', 'best.safetensors', 'epoch-001.safetensors'):
            assert same_weights(run / name, tmp_path / 'straight' / name) == 0, (written[kill_after], name)


def test_resume_writes_where_pointed_and_applies_or_refuses_flags(tmp_path, capsys):
    import shutil
    train(tmp_path / 'run', *FAST[:1], '1', *FAST[2:])
    shutil.copytree(tmp_path / 'run', tmp_path / 'copy')
    # extending the copy: it continues in the copy, the original stays a finished 1-epoch run
    assert ztrain.main(['--resume', str(tmp_path / 'copy'), '--epochs', '2', '--workers', '0']) == 0
    check_run_consistent(tmp_path / 'copy', 2)
    check_run_consistent(tmp_path / 'run', 1)
    assert not (tmp_path / 'run' / 'epoch-001.safetensors').exists()
    capsys.readouterr()
    for extra, needle in ((['--lr', '0.01'], '--lr'), (['--batch-size', '4'], '--batch-size'),
                          (['--epochs', '1'], 'already reached epoch 2'),
                          (['--output', str(tmp_path / 'elsewhere')], 'continues in the folder')):
        assert ztrain.main(['--resume', str(tmp_path / 'copy'), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'elsewhere').exists()


def test_resume_removes_temporaries_of_dead_writers_only(tmp_path):
    train(tmp_path / 'run', *FAST[:1], '1', *FAST[2:])
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getppid()
    (tmp_path / 'run' / f'last.state.pt.tmp{dead_pid}').write_bytes(b'x' * 1000)
    (tmp_path / 'run' / f'last.safetensors.tmp{live_pid}').write_bytes(b'being written')
    (tmp_path / f'outside.tmp{dead_pid}').write_bytes(b'not ours')
    assert ztrain.main(['--resume', str(tmp_path / 'run'), '--workers', '0']) == 0
    assert sorted(n for n in os.listdir(tmp_path / 'run') if '.tmp' in n) == [f'last.safetensors.tmp{live_pid}']
    assert (tmp_path / f'outside.tmp{dead_pid}').exists()


def test_empty_class_folder_is_refused_and_16_bit_images_are_scaled(tmp_path):
    from PIL import Image

    from zoo import data as zdata
    data = _image_folder(tmp_path / 'data')
    (data / 'train' / 'empty_class').mkdir()
    with pytest.raises(zdata.DataError, match=r"without images: \['empty_class'\]"):
        zdata.create_dataset(str(data), 'train')
    # a validation split takes its classes from training; an empty one there is just a class without examples
    (data / 'val' / 'dog_empty').mkdir()
    zdata.create_dataset(str(data), 'val', class_names=['cat', 'dog', 'dog_empty'])

    grey16 = (np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16)  # 0 .. 63960
    folder = tmp_path / 'grey' / 'train' / 'a'
    folder.mkdir(parents=True)
    Image.fromarray(grey16).save(folder / 'img.png')
    with Image.open(folder / 'img.png') as im:
        assert im.mode.startswith('I'), im.mode  # PIL keeps the 16 bits
    image = zdata.create_dataset(str(tmp_path / 'grey'), 'train')[0][0]  # no transform: CHW uint8
    expected = np.round(grey16 * (255.0 / 65535.0)).astype(np.uint8)
    assert image.shape == (3, 40, 40)
    assert np.array_equal(image[0].numpy(), expected) and np.array_equal(image[2].numpy(), expected)
