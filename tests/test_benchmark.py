"""tools/benchmark.py (zoo.benchmark): every comparison mode runs and writes consistent results.

Timings are never asserted (they depend on the machine); what is checked is that each mode measures
both contenders, the ratio is their quotient, and the JSON / CSV / markdown outputs agree.
"""
import csv
import json
import os
import subprocess

import pytest
import torch

from zoo.benchmark import main

pytestmark = pytest.mark.filterwarnings('ignore')

FAST = ['--img-size', '64', '--batch-sizes', '1', '2', '--runs', '2', '--warmup', '1', '--threads', '1']


def _run(tmp_path, *args):
    out = tmp_path / 'bench'
    torch_threads = torch.get_num_threads()
    try:
        assert main([*args, *FAST, '--output', str(out)]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    results = json.loads((out / 'results.json').read_text())['results']
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    assert (out / 'results.md').read_text().count('\n| zoo_') == len(results)
    return out, results


@pytest.mark.parametrize('compare,counterpart', [('timm', 'timm:efficientvit_m0'), ('reference', 'reference')])
def test_compare_modes_measure_both(tmp_path, compare, counterpart):
    _, results = _run(tmp_path, '--models', 'efficientvit_m0', '--compare', compare, '--no-cpu-memory')
    assert [(r['batch'], r['counterpart']) for r in results] == [(1, counterpart), (2, counterpart)]
    for r in results:
        assert len(r['zoo_times_ms']) == len(r['ref_times_ms']) == 2
        assert r['ratio'] == pytest.approx(r['zoo_ips'] / r['ref_ips'])


def test_train_mode_and_cpu_memory(tmp_path):
    _, results = _run(tmp_path, '--models', 'patnet_t0', '--compare', 'none', '--mode', 'train')
    assert [r['batch'] for r in results] == [2], 'train at batch 1 is skipped (BatchNorm)'
    assert results[0]['ref_ips'] is None and results[0]['zoo_mem_mb'] is not None


def test_compare_onnx_runs_ort_against_eager(tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    out, results = _run(tmp_path, '--models', 'patnet_t0', '--compare', 'onnx')
    assert os.listdir(out / 'onnx') == ['zoo_patnet_t0_64.onnx'], 'one export serves every batch size'
    assert [(r['batch'], r['counterpart']) for r in results] == [(1, 'eager'), (2, 'eager')]
    assert all(r['ratio'] == pytest.approx(r['zoo_ips'] / r['ref_ips']) for r in results)


def test_compare_onnx_refuses_settings_it_cannot_measure(capsys):
    with pytest.raises(SystemExit):
        main(['--models', 'patnet_t0', '--compare', 'onnx', '--mode', 'train'])
    assert '--compare onnx measures CPU fp32 inference' in capsys.readouterr().err


def test_compare_rev_runs_an_older_revision_in_isolation(tmp_path):
    """--compare rev builds this checkout's model and the same model at a git revision (HEAD here: always
    present, also in a shallow clone), each in its own process, from the same seed: equal weights, equal output."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True).returncode != 0:
        pytest.skip('not a git checkout')
    out = tmp_path / 'bench'
    torch_threads = torch.get_num_threads()
    try:
        assert main(['--models', 'efficientvit_m0', '--compare', 'rev', '--rev', 'HEAD', '--img-size', '64',
                     '--batch-sizes', '1', '--runs', '1', '--warmup', '0', '--threads', '1',
                     '--output', str(out)]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    (r,) = json.loads((out / 'results.json').read_text())['results']
    assert r['counterpart'] == 'rev:HEAD' and len(r['zoo_times_ms']) == len(r['ref_times_ms']) == 1
    assert r['ratio'] == pytest.approx(r['zoo_ips'] / r['ref_ips'])
    assert r['zoo_mem_mb'] is not None and r['ref_mem_mb'] is not None
    assert r['out_max_abs_diff'] == 0.0, 'a model whose code did not change must give the same output'


def test_compare_rev_refuses_what_is_not_a_commit(tmp_path):
    with pytest.raises(SystemExit, match='not a commit'):
        main(['--models', 'efficientvit_m0', '--compare', 'rev', '--rev', 'no-such-revision-xyz',
              '--output', str(tmp_path)])
