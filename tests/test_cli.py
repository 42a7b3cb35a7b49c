"""The `zoo` command and every tool's errors: one line naming the file or flag and the problem, a non-zero exit,
the traceback only with --verbose; argument errors answered before any model is built; `zoo --help` without
torch; checkpoints holding pickled code refused by every loading path with one line naming the file."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from zoo import cli
from zoo import train as ztrain
from zoo import validate as zvalidate

SCRIPT = os.path.join(os.path.dirname(sys.executable), 'zoo')


class Evil:
    """Pickles to a call of os.mkdir: if anything unpickled it, the marker folder would appear."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save({'weight': torch.zeros(2), 'payload': Evil(str(marker))}, path)
    yield path
    assert not marker.exists(), 'pickled code was executed'


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.skipif(not os.path.isfile(SCRIPT), reason='the zoo console script is not installed')
def test_help_and_unknown_commands_import_no_torch():
    for args, status in ((['--help'], 0), (['no_such_command'], 2)):
        done = subprocess.run([sys.executable, '-X', 'importtime', SCRIPT, *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == status, done.stderr[-2000:]
        imported = [line.rsplit('|', 1)[-1].strip() for line in done.stderr.splitlines() if 'import time' in line]
        assert imported and not any(m.split('.')[0] in ('torch', 'timm') for m in imported), imported[-20:]
    assert 'zoo train' in subprocess.run([sys.executable, SCRIPT, '--help'], capture_output=True, text=True).stdout


def test_list(capsys):
    assert cli.main(['list', 'moat_0*']) == 0
    assert capsys.readouterr().out.split() == ['zoo_moat_0', 'zoo_moat_0_no_pe']
    assert cli.main(['list', 'no_such_model']) == 2
    one_line_error(capsys, "no zoo model matches 'no_such_model'")
    with pytest.raises(SystemExit) as info:
        cli.main(['list', '--help'])
    assert info.value.code == 0 and 'PATTERN' in capsys.readouterr().out.upper()


def test_train_argument_errors_come_before_any_model(tmp_path, capsys, monkeypatch):
    import timm

    def no_build(*args, **kwargs):
        raise AssertionError('a model was built before the arguments were checked')
    monkeypatch.setattr(timm, 'create_model', no_build)
    base = ['--model', 'test_vit', '--output', str(tmp_path / 'run')]
    for extra, needle in ((['-b', '0'], '--batch-size must be >= 1'), (['--epochs', '0'], '--epochs must be >= 1'),
                          (['--epochs', '-1'], '--epochs must be >= 1'), (['--img-size', '-8'], '--img-size'),
                          (['--config', str(tmp_path / 'missing.yaml')], 'missing.yaml'),
                          (['--pretrained-path', str(tmp_path / 'none.pth')], 'none.pth')):
        assert cli.main(['train', *base, *extra]) == 2, extra
        one_line_error(capsys, needle)
    (tmp_path / 'file').write_text('x')
    assert cli.main(['train', '--model', 'test_vit', '--output', str(tmp_path / 'file')]) == 2
    one_line_error(capsys, 'is a file')


def test_verbose_shows_the_traceback(capsys):
    assert cli.main(['train', '--model', 'test_vit', '-b', '0', '--verbose']) == 2
    err = capsys.readouterr().err
    assert 'Traceback' in err and err.strip().splitlines()[-1] == 'zoo train: error: --batch-size must be >= 1, got 0'


def test_bad_checkpoint_files_are_one_line(tmp_path, capsys, evil):
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(b'\x10\x00\x00')
    for path, needle in ((evil, f'this file holds pickled code and was not loaded: {evil}'),
                         (truncated, f'{truncated}: not a readable safetensors file')):
        assert zvalidate.main(['--model', 'test_vit', '--checkpoint', str(path), '-j', '0']) == 2
        one_line_error(capsys, needle)
    assert cli.main(['convert', 'moat', '--variant', 'tiny_moat_0', '--src', str(truncated)]) == 2
    one_line_error(capsys, f'{truncated}: not a readable safetensors file')
    assert cli.main(['train', '--model', 'test_vit', '--pretrained-path', str(evil), '--output',
                     str(tmp_path / 'r'), '--workers', '0', '--epochs', '1', '--img-size', '32']) == 2
    one_line_error(capsys, 'this file holds pickled code and was not loaded')
    if importlib.util.find_spec('onnxscript') and importlib.util.find_spec('onnxruntime'):
        for model in ('test_vit', 'efficientvit_m0'):  # a timm model and a zoo model
            assert cli.main(['export', model, '--checkpoint', str(evil), '-o', str(tmp_path / 'x.onnx')]) == 2
            one_line_error(capsys, f'this file holds pickled code and was not loaded: {evil}')
    run = tmp_path / 'evil_run'
    run.mkdir()
    (run / 'last.state.pt').write_bytes(evil.read_bytes())
    assert ztrain.main(['--resume', str(run)]) == 2
    one_line_error(capsys, f'this file holds pickled code and was not loaded: {run / "last.state.pt"}')


def test_python_api_refuses_pickled_code_and_names_a_missing_file(tmp_path, evil):
    import zoo
    from zoo.errors import PickledCodeError
    with pytest.raises(PickledCodeError, match='pickled code'):
        zoo.create_model('efficientvit_m0', pretrained=True, pretrained_cfg_overlay=dict(file=str(evil)))
    missing = str(tmp_path / 'efficientvit_m0.pth')
    with pytest.raises(FileNotFoundError, match=f'{missing}.*does not exist.*zoo convert'):
        zoo.create_model('efficientvit_m0', pretrained=True, pretrained_cfg_overlay=dict(file=missing))


def test_sr_and_benchmark_name_errors(tmp_path, capsys, monkeypatch):
    from zoo import benchmark
    monkeypatch.chdir(tmp_path)
    assert cli.main(['sr', 'missing.png']) == 2
    one_line_error(capsys, 'no such image: missing.png')
    (tmp_path / 'a.png').write_bytes(b'')
    assert cli.main(['sr', 'a.png', '--model', 'no_such_sr']) == 2
    one_line_error(capsys, "unknown zoo model 'no_such_sr'")
    assert cli.main(['sr', 'a.png', '--model', 'efficientvit_m0']) == 2
    one_line_error(capsys, 'not a super-resolution model')
    assert benchmark.main(['--models', 'no_such_model']) == 2
    one_line_error(capsys, "--models: unknown zoo model 'no_such_model'")
