"""tools/gpu_check.py (zoo/gpu_check.py) on the CPU: the smoke run, a part cut by its time limit, the report.

The tool runs each part in a subprocess, so these tests run it as users do (``tools/gpu_check.py``) with
CUDA hidden; the GPU parts then report "skipped: no CUDA" and the op table runs at a small size.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from zoo.gpu_check import PARTS, collect_op_tests, op_table_summary, parse_args

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')


def run_tool(out: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / 'tools' / 'gpu_check.py'), '--out', str(out), *extra],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)


def test_cpu_smoke_run_writes_every_part_and_the_report(tmp_path):
    proc = run_tool(tmp_path, '--budget', '240', '--quick')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / 'gpu_check.json').read_text())
    status = {part: rec['status'] for part, rec in summary['parts'].items()}
    assert status == dict(versions='ok', op_tests='ok', parity='skipped', kernels='skipped', speed='skipped',
                          op_table='ok')
    assert summary['parts']['parity']['note'] == 'skipped: no CUDA'

    versions = json.loads((tmp_path / 'versions.json').read_text())
    assert versions['cuda_available'] is False and versions['torch'] and 'reference' in versions['zoo_ops_modes']

    tests = json.loads((tmp_path / 'op_tests.json').read_text())
    assert tests['counts']['passed'] == 2 and tests['counts']['failed'] == 0
    assert '2 passed' in tests['summary']

    table = json.loads((tmp_path / 'op_table.json').read_text())
    assert table['modes'] == versions['zoo_ops_modes']
    rows = table['rows']
    assert rows and {r['family'] for r in rows} == {'efficientvit'} and {r['op'] for r in rows} == {'attention'}
    assert {r['mode'] for r in rows} == set(table['modes']) and {r['pass'] for r in rows} == {'fwd', 'fwd+bwd'}
    for r in rows:
        assert r['error'] is None and r['ms'] > 0, r
        assert r['args']['q']['shape'][-1] == 16 and r['args']['q']['dtype'] == 'float32'
        assert r['grad'] == (r['pass'] == 'fwd+bwd') and r['calls_per_forward'] >= 1

    report = (tmp_path / 'gpu_check.md').read_text()
    for part in PARTS:
        assert f'## {part}: ' in report
    assert '| efficientvit | attention | fp32 | fwd+bwd |' in report
    assert report in proc.stdout  # also printed


def test_a_part_cut_by_its_time_limit_does_not_lose_the_others(tmp_path):
    proc = run_tool(tmp_path, '--parts', 'versions', 'op_tests', '--timeout', 'versions=2')
    assert proc.returncode == 1  # a part did not finish
    parts = json.loads((tmp_path / 'gpu_check.json').read_text())['parts']
    assert parts['versions']['status'] == 'timed_out' and parts['versions']['seconds'] < 15
    assert 'zoo.gpu_check' in parts['versions']['log_tail']  # what it printed (its command line) is kept
    assert parts['op_tests']['status'] == 'ok'
    report = (tmp_path / 'gpu_check.md').read_text()
    assert '## versions: timed_out' in report and '## op_tests: ok' in report


def test_op_test_failures_keep_their_reasons(tmp_path):
    lines = [dict(nodeid='tests/ops/test_a.py::test_x[1]', when='call', outcome='failed', seconds=0.1,
                  message='    assert err < tol\nE   AssertionError: max err 0.5 > 1e-3'),
             dict(nodeid='tests/ops/test_a.py::test_y', when='call', outcome='passed', seconds=0.1),
             dict(nodeid='tests/ops/test_a.py::test_z', when='setup', outcome='skipped', seconds=0, message='no GPU')]
    (tmp_path / 'op_tests.jsonl').write_text('\n'.join(json.dumps(r) for r in lines) + '\n{"cut by a ki')
    (tmp_path / 'op_tests.log').write_text('F.s\n=== 1 failed, 1 passed, 1 skipped in 3.2s ===\n')
    data = collect_op_tests(tmp_path, tmp_path / 'op_tests.log')
    assert data['counts'] == dict(passed=1, failed=1, error=0, skipped=1)
    assert data['summary'] == '1 failed, 1 passed, 1 skipped in 3.2s'
    assert 'max err 0.5' in data['failures'][0]['message']


def test_op_table_summary_picks_the_winner_and_auto_ratio():
    base = dict(family='volo', op='outlook_attention', signature='x', autocast='bf16', calls_per_forward=2)
    rows = [dict(base, mode='auto', ms=2.0, **{'pass': 'fwd'}), dict(base, mode='reference', ms=1.0, **{'pass': 'fwd'}),
            dict(base, mode='triton', ms=None, error='boom', **{'pass': 'fwd'})]
    (g,) = op_table_summary(rows)
    assert g['winner'] == 'reference' and g['auto_ratio'] == 2.0 and g['ms']['triton'] is None


def test_bad_arguments_are_refused(capsys):
    for argv in (['--out', 'x', '--timeout', 'nopart=3'], ['--out', 'x', '--timeout', 'versions=abc'],
                 ['--out', 'x', '--budget', '0'], ['--out', 'x', '--parts', 'nothing']):
        try:
            parse_args(argv)
        except SystemExit as e:
            assert e.code == 2
        else:
            raise AssertionError(f'{argv} was accepted')
