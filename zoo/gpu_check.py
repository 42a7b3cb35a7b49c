"""One-call GPU check: versions, op tests, model parity, kernels that ran, speed, per-call op table.

    python tools/gpu_check.py --out DIR [--budget 480] [--parts versions op_tests ...] [--quick]
    zoo gpu-check --out DIR

Made for short GPU leases on a fresh machine: it installs nothing, works from a source checkout
(``pip install --no-deps --no-build-isolation -e .``) and never imports the training or OpenMMLab code.
Every part runs in its own subprocess with its own time limit, a share of ``--budget`` (the slack of
a part that ends early goes to the ones after it), so a hang or a CUDA crash in one part loses only
that part: it is recorded as ``timed_out`` / ``failed`` with the tail of what it printed. Each part
writes ``DIR/<part>.json`` (rewritten as it goes, so a part cut at its limit keeps what it reached)
and its output to ``DIR/<part>.log``; at the end ``DIR/gpu_check.md`` combines them (also printed)
and ``DIR/gpu_check.json`` holds every part's status.

Parts (``--parts`` picks some; the order is fixed):

* ``versions``: python, torch, CUDA, cuDNN, triton, timm, GPU name / memory / driver, zoo git sha.
* ``op_tests``: ``pytest tests/ops -q -rfE --tb=short`` (``-n 8`` with pytest-xdist on a GPU,
  ``--timeout`` with pytest-timeout); every outcome with its short traceback lands in
  ``op_tests.jsonl`` as it happens (plugin :mod:`zoo._pytest_jsonl`). Without CUDA only two quick tests run.
* ``parity``: each family's smallest model (seeded, randomised weights) at a realistic size on CUDA,
  every ops mode but ``reference`` (``auto``, ``triton``, ...) against ``ZOO_OPS=reference`` on the same GPU:
  fp32 eval outputs, bf16-autocast outputs, fp32 train-mode gradients. Relative difference =
  max|a - b| / max|b| for outputs, ||ga - gb|| / ||gb|| over all gradients. TF32 is off.
  CATANet (super-resolution) compares its output image.
* ``kernels``: torch.profiler over one ``auto`` forward+backward per family (fp32 and bf16 autocast):
  the zoo Triton kernels that ran, the SDPA / flash / cuDNN-attention kernels that ran.
* ``speed``: bf16 autocast inference and SGD training step images/s and peak memory per family's
  smallest model: zoo under ``auto``, ``triton``, ``reference``, and timm's own model where timm has the
  architecture (zoo.benchmark's helpers). Batch 128 at 224 (256 for efficientvit_m0 / patnet_t0,
  CATANet 16 at 64x64).
* ``op_table``: every zoo.ops call the families' smallest models make in one real-size forward
  (fp32 and bf16 autocast), recorded by swapping the op functions the model modules imported from
  ``zoo.ops`` (``zoo.models.*`` module attributes that *are* a public op) for a recording wrapper during
  that forward; unique calls are then re-run on copies of their real arguments and timed under every
  mode in ``zoo.ops._dispatch._MODES`` (read at run time).

``op_table.json`` schema (one flat row per call x pass x mode)::

    {"setting": {"device": str, "torch": str, "triton": str|null, "date": str, "quick": bool},
     "modes": [str, ...],
     "rows": [{"op": "attention", "family": "davit", "model": "zoo_davit_tiny",
               "autocast": "bf16" | "fp32",          # the autocast the model ran (and the call is timed) under
               "pass": "fwd" | "fwd+bwd",             # fwd runs under no_grad; fwd+bwd only for calls needing grad
               "grad": bool,                          # whether the timed pass needed a gradient
               "calls_per_forward": int,              # how often the model made this exact call in one forward
               "args": {name: {"shape": [...], "dtype": "bfloat16", "stride": [...], "contiguous": bool,
                               "requires_grad": bool} | {"value": repr}},
               "signature": str,                      # the args in one line, e.g. "q=bf16[2048,3,49,32] ..."
               "mode": "auto", "ms": float|null, "error": str|null}]}

Without CUDA the tool runs a smoke version (so it can be tested anywhere): parity, kernels and speed
say "skipped: no CUDA"; the op table runs at small sizes on the CPU (where every mode runs the reference).
"""
import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent  # the source checkout (tests/ops lives here)

# part -> (share of the budget, needs CUDA); seconds at the default 480 s budget
PARTS = {
    'versions': (30, False),
    'op_tests': (140, False),
    'parity': (70, True),
    'kernels': (40, True),
    'speed': (100, True),
    'op_table': (100, False),
}
DEFAULT_BUDGET = 480
MIN_PART_S = 30
CPU_OP_TESTS = 'test_bias_broadcast_per_window or test_shape_check'  # two quick op tests for the CPU smoke run
CPU_OP_TABLE_FAMILIES = ['efficientvit']
FAST_BATCH_256 = ('zoo_efficientvit_m0', 'zoo_patnet_t0')
SDPA_KERNEL = re.compile(r'flash|fmha|efficient_attention|mem_eff|cudnn.*(attn|attention)|sdpa', re.I)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='zoo gpu-check', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='folder for the parts\' JSON / logs and gpu_check.md')
    p.add_argument('--budget', type=float, default=DEFAULT_BUDGET, help='seconds for all parts together')
    p.add_argument('--parts', nargs='+', choices=list(PARTS), default=list(PARTS))
    p.add_argument('--quick', action='store_true', help='smaller batches, fewer runs')
    p.add_argument('--families', nargs='+', default=None, help='limit the model parts to these families')
    p.add_argument('--timeout', action='append', default=[], metavar='PART=SECONDS',
                   help='a fixed time limit for a part instead of its share of the budget (repeatable)')
    # internal: run one part in this process (the parent starts one subprocess per part)
    p.add_argument('--_part', choices=list(PARTS), help=argparse.SUPPRESS)
    p.add_argument('--_deadline', type=float, help=argparse.SUPPRESS)
    p.add_argument('--_cuda', choices=['yes', 'no'], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budget <= 0:
        p.error('--budget must be > 0 seconds')
    args.timeouts = {}
    for item in args.timeout:
        part, _, secs = item.partition('=')
        try:
            args.timeouts[part] = float(secs)
        except ValueError:
            p.error(f'--timeout {item!r}: expected PART=SECONDS')
        if part not in PARTS or args.timeouts[part] <= 0:
            p.error(f'--timeout {item!r}: PART is one of {list(PARTS)}, SECONDS > 0')
    return args


# ----------------------------------------------------------------------------------------------
# the parent: one subprocess per part, then the report

def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors='replace')
    except OSError:
        return ''
    return text[-chars:]


def _op_tests_cmd(out: Path, cuda: Optional[bool], timeout: float) -> List[str]:
    cmd = [sys.executable, '-m', 'pytest', 'tests/ops', '-q', '-rfE', '--tb=short', '-p', 'no:cacheprovider',
           '-p', 'zoo._pytest_jsonl']
    if cuda:
        if importlib.util.find_spec('xdist') is not None:
            cmd += ['-n', '8']
        if importlib.util.find_spec('pytest_timeout') is not None:
            cmd += [f'--timeout={max(30, int(timeout / 3))}']
    else:
        cmd += ['-k', CPU_OP_TESTS]
    return cmd


def run_part(part: str, timeout: float, args, cuda: Optional[bool]) -> dict:
    """Run one part in a subprocess (its own process group), killed at ``timeout`` seconds."""
    out = Path(args.out)
    log = out / f'{part}.log'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if part == 'op_tests':
        if not (ROOT / 'tests' / 'ops').is_dir():
            return dict(status='skipped', note=f'no tests/ops under {ROOT} (needs a source checkout)', seconds=0)
        jsonl = out / 'op_tests.jsonl'
        jsonl.unlink(missing_ok=True)
        env['ZOO_PYTEST_JSONL'] = str(jsonl)
        cmd = _op_tests_cmd(out, cuda, timeout)
    else:
        # the part stops itself a little before it is killed, so it can write what it has
        deadline = time.time() + max(1.0, 0.92 * timeout - 3)
        cmd = [sys.executable, '-m', 'zoo.gpu_check', '--out', str(out), '--_part', part, '--_deadline',
               f'{deadline:.1f}'] + (['--quick'] if args.quick else [])
        if cuda is not None:
            cmd += ['--_cuda', 'yes' if cuda else 'no']
        if args.families:
            cmd += ['--families', *args.families]
    (out / f'{part}.json').unlink(missing_ok=True)
    t0 = time.time()
    with open(log, 'w') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out, rc = True, None
            _kill_group(proc)
    rec = dict(seconds=round(time.time() - t0, 1), timeout=round(timeout, 1), rc=rc, cmd=' '.join(cmd))
    if part == 'op_tests':
        data = collect_op_tests(out, log)
        _write_json(out / 'op_tests.json', data)
    else:
        data = _read_json(out / f'{part}.json') or {}
    if timed_out:
        rec['status'] = 'timed_out'
    elif part == 'op_tests':
        rec['status'] = 'ok' if rc == 0 else ('failed' if rc == 1 else f'error (pytest exit {rc})')
    elif rc != 0:
        rec['status'] = 'failed'
    else:
        rec['status'] = data.get('status', 'failed')
    if data.get('note'):
        rec['note'] = data['note']
    if rec['status'] != 'ok':
        rec['log_tail'] = _tail(log)
    return rec


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the part's whole process group (pytest-xdist workers too), SIGKILL what is left after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def collect_op_tests(out: Path, log: Path) -> dict:
    """Counts and failures from the plugin's JSON lines; pytest's own summary line from the log if it got there."""
    rows = []
    try:
        for line in (out / 'op_tests.jsonl').read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by the kill
    except OSError:
        pass
    counts = {k: sum(r['outcome'] == k for r in rows) for k in ('passed', 'failed', 'error', 'skipped')}
    failures = [r for r in rows if r['outcome'] in ('failed', 'error')]
    summary = ''
    for line in reversed(_tail(log, 20000).splitlines()):
        if re.search(r'\d+ (passed|failed|error|skipped|deselected)', line) and ' in ' in line:
            summary = line.strip('= ')
            break
    return dict(counts=counts, summary=summary, failures=failures,
                skipped=[r for r in rows if r['outcome'] == 'skipped'])


def _probe_cuda() -> Optional[bool]:
    """Whether torch sees a GPU, asked in a subprocess (this process never initialises CUDA)."""
    try:
        r = subprocess.run([sys.executable, '-c', 'import torch; print(torch.cuda.is_available())'],
                           capture_output=True, text=True, timeout=120)
        return r.stdout.strip().endswith('True')
    except subprocess.SubprocessError:
        return None


def part_timeouts(parts: List[str], remaining: float) -> float:
    """The next part's share of the remaining budget (weights of the parts still to run)."""
    total = sum(PARTS[p][0] for p in parts)
    return remaining * PARTS[parts[0]][0] / total


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._part:
        return run_one_part(args)
    out = Path(args.out).resolve()  # the parts run with the checkout as their working folder
    args.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in PARTS if p in args.parts]
    start = time.time()
    summary = dict(started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                   budget_s=args.budget, quick=args.quick, families=args.families, parts={})
    cuda = None  # learnt from the versions part
    for i, part in enumerate(parts):
        remaining = args.budget - (time.time() - start)
        # its share of what is left, but at least MIN_PART_S (importing torch alone can take 10 s on a busy host)
        timeout = args.timeouts.get(part) or min(remaining, max(MIN_PART_S, part_timeouts(parts[i:], remaining)))
        if PARTS[part][1] and cuda is False:
            rec = dict(status='skipped', note='skipped: no CUDA', seconds=0)
        elif timeout < 2 and part not in args.timeouts:
            rec = dict(status='skipped', note='skipped: the budget is spent', seconds=0)
        else:
            if cuda is None and part != 'versions':
                cuda = _probe_cuda()
            print(f'[gpu-check] {part} (limit {timeout:.0f} s) ...', flush=True)
            rec = run_part(part, timeout, args, cuda)
        print(f'[gpu-check] {part}: {rec["status"]} in {rec["seconds"]} s', flush=True)
        summary['parts'][part] = rec
        if part == 'versions':
            versions = _read_json(out / 'versions.json') or {}
            cuda = versions.get('cuda_available')
        _write_json(out / 'gpu_check.json', summary)
    summary['seconds'] = round(time.time() - start, 1)
    _write_json(out / 'gpu_check.json', summary)
    report = render_report(out, summary)
    (out / 'gpu_check.md.tmp').write_text(report)
    os.replace(out / 'gpu_check.md.tmp', out / 'gpu_check.md')
    print(report)
    bad = [p for p, r in summary['parts'].items() if r['status'] not in ('ok', 'skipped')]
    return 1 if bad else 0


# ----------------------------------------------------------------------------------------------
# the report

def _fmt(v, spec='.2e'):
    if v is None:
        return '-'
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def _md_table(header: List[str], rows: List[list]) -> List[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c).replace('|', '\\|') for c in row) + ' |' for row in rows]
    return lines


def _render_versions(d: dict) -> List[str]:
    return _md_table(['what', 'version'], [[k, v] for k, v in d.items() if k not in ('status', 'note')])


def _render_op_tests(d: dict) -> List[str]:
    c = d.get('counts', {})
    lines = [f'{c.get("passed", 0)} passed, {c.get("failed", 0)} failed, {c.get("error", 0)} errors, '
             f'{c.get("skipped", 0)} skipped (as recorded)' + (f'; pytest: {d["summary"]}' if d.get('summary') else
                                                              '; pytest did not print its summary (cut?)')]
    failures = d.get('failures', [])
    if failures:
        lines += ['', 'Failures (first line of each reason):', '']
        for r in failures:
            first = next((ln.strip() for ln in reversed(r.get('message', '').splitlines())
                          if ln.strip().startswith('E ')), '')
            lines.append(f'- `{r["nodeid"]}` ({r["when"]}): {first[:300]}')
        lines += ['', '<details><summary>short tracebacks</summary>', '']
        budget = 60000
        for r in failures:
            text = r.get('message', '')[-2500:]
            if budget - len(text) < 0:
                lines.append('(more tracebacks in op_tests.jsonl)')
                break
            budget -= len(text)
            lines += [f'`{r["nodeid"]}`', '', '```', text, '```', '']
        lines.append('</details>')
    return lines


def _render_parity(d: dict) -> List[str]:
    rows = [[r['model'], r['mode'], _fmt(r.get('fp32')), _fmt(r.get('bf16')), _fmt(r.get('grad_fp32')),
             r.get('size', ''), (r.get('error') or '')[:200]] for r in d.get('rows', [])]
    return _md_table(['model', 'mode vs reference', 'fp32 out max rel', 'bf16 out max rel', 'fp32 grad rel L2',
                      'input', 'error'], rows)


def _render_kernels(d: dict) -> List[str]:
    rows = [[r['model'], r['autocast'], ', '.join(r.get('triton', [])) or '-', ', '.join(r.get('sdpa', [])) or '-',
             r.get('cuda_kernels', '-'), (r.get('error') or '')[:200]] for r in d.get('rows', [])]
    return _md_table(['model', 'autocast', 'zoo Triton kernels', 'SDPA / flash kernels', '# kernel names', 'error'],
                     rows)


def _render_speed(d: dict) -> List[str]:
    rows = []
    for r in d.get('rows', []):
        rows.append([r['model'], r['contender'], r['batch'], _fmt(r.get('infer_ips'), '.0f'),
                     _fmt(r.get('train_ips'), '.0f'), _fmt(r.get('infer_mb'), '.0f'), _fmt(r.get('train_mb'), '.0f'),
                     (r.get('error') or '')[:200]])
    lines = _md_table(['model', 'contender', 'batch', 'infer img/s', 'train img/s', 'infer peak MB',
                       'train peak MB', 'error'], rows)
    return lines + ['', 'auto against the best of reference and timm (speed: auto / best, memory: auto / reference):',
                    ''] + _md_table(['model', 'infer speed', 'train speed', 'train memory'], speed_ratios(d))


def speed_ratios(d: dict) -> List[list]:
    by_model: Dict[str, Dict[str, dict]] = {}
    for r in d.get('rows', []):
        kind = 'timm' if r['contender'].startswith('timm:') else r['contender']
        by_model.setdefault(r['model'], {})[kind] = r
    out = []
    for model, rs in by_model.items():
        auto, ref = rs.get('auto', {}), rs.get('reference', {})
        cells = [model]
        for key in ('infer_ips', 'train_ips'):
            others = [rs[k].get(key) for k in ('reference', 'timm') if k in rs and rs[k].get(key)]
            cells.append(_fmt(auto[key] / max(others), '.2f') if auto.get(key) and others else '-')
        cells.append(_fmt(auto['train_mb'] / ref['train_mb'], '.2f') if auto.get('train_mb') and ref.get('train_mb')
                     else '-')
        out.append(cells)
    return out


def op_table_summary(rows: List[dict]) -> List[dict]:
    """One entry per (family, op, signature, autocast, pass): ms per mode, the winner, auto's ratio to it."""
    groups: Dict[tuple, dict] = {}
    for r in rows:
        key = (r['family'], r['op'], r['signature'], r['autocast'], r['pass'])
        g = groups.setdefault(key, dict(family=r['family'], op=r['op'], signature=r['signature'],
                                        autocast=r['autocast'], pass_=r['pass'],
                                        calls=r['calls_per_forward'], ms={}))
        g['ms'][r['mode']] = r['ms']
    for g in groups.values():
        timed = {m: v for m, v in g['ms'].items() if v is not None}
        g['winner'] = min(timed, key=timed.get) if timed else None
        best = timed.get(g['winner'])
        g['auto_ratio'] = timed['auto'] / best if best and 'auto' in timed else None
    return list(groups.values())


def _render_op_table(d: dict) -> List[str]:
    modes = d.get('modes', [])
    rows = []
    for g in op_table_summary(d.get('rows', [])):
        rows.append([g['family'], g['op'], g['autocast'], g['pass_'], f'`{g["signature"]}`', g['calls']]
                    + [_fmt(g['ms'].get(m), '.3f') for m in modes] + [g['winner'] or '-', _fmt(g['auto_ratio'], '.2f')])
    lines = _md_table(['family', 'op', 'autocast', 'pass', 'call', 'calls/fwd'] + [f'{m} ms' for m in modes]
                      + ['winner', 'auto / best'], rows)
    errors = [f'- {r["model"]} {r.get("mode", "")} {r.get("signature", "")}: {r["error"]}'
              for r in d.get('errors', []) + d.get('rows', []) if r.get('error')]
    return lines + (['', 'Errors:', ''] + errors[:50] if errors else [])


RENDERERS = {'versions': _render_versions, 'op_tests': _render_op_tests, 'parity': _render_parity,
             'kernels': _render_kernels, 'speed': _render_speed, 'op_table': _render_op_table}


def render_report(out: Path, summary: dict) -> str:
    lines = [f'# zoo GPU check ({summary["started"]})', '',
             f'budget {summary["budget_s"]:.0f} s, took {summary.get("seconds", "?")} s'
             + (', --quick' if summary.get('quick') else '') + '', '']
    lines += _md_table(['part', 'status', 'seconds', 'limit', 'note'],
                       [[p, r['status'], r['seconds'], r.get('timeout', '-'), r.get('note', '')]
                        for p, r in summary['parts'].items()])
    for part, rec in summary['parts'].items():
        lines += ['', f'## {part}: {rec["status"]}', '']
        data = _read_json(out / f'{part}.json')
        if data:
            if data.get('partial'):
                lines += ['(partial: the part stopped at its time limit)', '']
            try:
                lines += RENDERERS[part](data)
            except (KeyError, TypeError, ValueError) as e:  # a half-written part must not lose the report
                lines.append(f'(could not render {part}.json: {e!r})')
        elif rec.get('note'):
            lines.append(rec['note'])
        if rec.get('log_tail'):
            lines += ['', f'<details><summary>{part}.log (tail)</summary>', '', '```', rec['log_tail'], '```',
                      '</details>']
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------
# the parts (each in its own subprocess; torch and the models are imported only here)

class FamilyTimeout(BaseException):
    """One family used up its share of a part's time (a BaseException: the per-mode ``except Exception`` lets it
    through to the family loop, which records it and goes on with the next family)."""


@contextlib.contextmanager
def family_limit(seconds: float):
    """Raise :class:`FamilyTimeout` after ``seconds`` (SIGALRM: lands between Python bytecodes / kernel launches)."""
    def on_alarm(signum, frame):
        raise FamilyTimeout(f'stopped after its share of the part\'s time ({seconds:.0f} s)')
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.1))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Part:
    """What a part needs: its output file, deadline, sizes; ``save()`` rewrites its JSON."""

    def __init__(self, name: str, args):
        import torch
        self.name, self.out, self.quick = name, Path(args.out), args.quick
        self.deadline = args._deadline or float('inf')
        self.cuda = torch.cuda.is_available() if args._cuda is None else args._cuda == 'yes'
        self.device = 'cuda' if self.cuda else 'cpu'
        self.families = args.families
        self.data = dict(status='running', rows=[])
        self.family_deadline = float('inf')

    def time_left(self) -> float:
        return self.deadline - time.time()

    def out_of_time(self, need: float = 0.0) -> bool:
        if self.time_left() <= need:
            self.data['partial'] = True
            return True
        return False

    def save(self, status: Optional[str] = None) -> None:
        if status:
            self.data['status'] = status
        _write_json(self.out / f'{self.name}.json', self.data)

    def models(self) -> List[str]:
        from zoo.models._builder import smallest_per_family
        families = self.families or (None if self.cuda else CPU_OP_TABLE_FAMILIES)
        return smallest_per_family(families)

    def each_model(self, min_left: float):
        """(name, seconds): the models one by one with their fair share of the time left, until ``min_left``."""
        names = self.models()
        for i, name in enumerate(names):
            if self.out_of_time(min_left):
                return
            share = self.time_left() / (len(names) - i)
            self.family_deadline = time.time() + share
            yield name, share

    @contextlib.contextmanager
    def guard(self, name: str, share: float):
        """A hard limit of twice the family's share, so one slow or hung family (a long Triton compile, an
        interpreter-speed fall-back) cannot starve the rest; its timeout is recorded and the part goes on."""
        try:
            with family_limit(min(2 * share, self.time_left() - 1)):
                yield
        except FamilyTimeout as e:
            self.data.setdefault('errors', []).append(dict(model=name, error=f'FamilyTimeout: {e}'))
            self.save()


def run_one_part(args) -> int:
    part = Part(args._part, args)
    if part.cuda:
        import torch
        torch.backends.cudnn.benchmark = False
    fn = {'versions': part_versions, 'parity': part_parity, 'kernels': part_kernels, 'speed': part_speed,
          'op_table': part_op_table}[part.name]
    if PARTS[part.name][1] and not part.cuda:
        part.data['note'] = 'skipped: no CUDA'
        part.save('skipped')
        return 0
    part.save()
    fn(part)
    part.save(part.data['status'] if part.data['status'] != 'running' else 'ok')
    return 0


def _short_error(e: BaseException) -> str:
    return f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:500]


def part_versions(part: Part) -> None:
    import platform

    import torch
    d = part.data
    d.pop('rows')
    d.update(python=platform.python_version(), platform=platform.platform(), torch=torch.__version__,
             cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
             else None, cuda_available=torch.cuda.is_available())
    for pkg in ('triton', 'timm', 'numpy', 'onnxruntime', 'pytest', 'xdist', 'pytest_timeout'):
        try:
            mod = __import__(pkg)
            d[pkg] = getattr(mod, '__version__', 'installed')
        except ImportError:
            d[pkg] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        d.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                 capability=f'{props.major}.{props.minor}', gpu_count=torch.cuda.device_count())
        try:
            d['driver'] = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                         capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            d['driver'] = None
    from zoo.ops import _dispatch
    d['zoo_ops_modes'] = list(_dispatch._MODES)
    d['ZOO_OPS'] = os.environ.get('ZOO_OPS')
    if (ROOT / '.git').exists():
        def git(*a):
            r = subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True, timeout=20)
            return r.stdout.strip() if r.returncode == 0 else None
        d['zoo_git_sha'] = git('rev-parse', 'HEAD')
        d['zoo_git_dirty'] = bool(git('status', '--porcelain', '--untracked-files=no'))
    else:
        d['zoo_git_sha'] = None


def _build(name: str, device: str, seed: int = 0):
    """A seeded model with randomised weights (no trivially-zero output), on ``device``."""
    import torch

    import zoo
    from zoo.models._builder import randomize_weights_
    torch.manual_seed(seed)
    return randomize_weights_(zoo.create_model(name), seed=seed).to(device)


def _realistic(name: str, part: Part, batch: int):
    """(batch, side) for a real-size run: 224 (CATANet: 64x64 low-res), the batch quartered with --quick."""
    from zoo.models._builder import small_input_size
    if not part.cuda:  # smoke size; 2 so BatchNorm can run in train mode
        return 2, small_input_size(name)[0]
    side = 64 if 'catanet' in name else 224
    return max(2, batch // 4 if part.quick else batch), side


def _modes() -> List[str]:
    from zoo.ops._dispatch import _MODES
    return list(_MODES)


def _max_rel(a, b) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def part_parity(part: Part) -> None:
    import torch

    from zoo.ops._dispatch import forced_ops_mode
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    others = [m for m in _modes() if m != 'reference']
    for name, share in part.each_model(5):
        with part.guard(name, share):
            batch, side = _realistic(name, part, 8)
            base = dict(model=name, size=f'{batch}x3x{side}x{side}')
            try:
                model = _build(name, part.device)
                x = torch.randn(batch, getattr(model, 'in_chans', 3), side, side, device=part.device,
                                generator=torch.Generator(part.device).manual_seed(1))
                ref = _parity_outputs(model, x, 'reference')
            except Exception as e:  # noqa: BLE001 - one family's failure is a result, not the end of the part
                part.data['rows'].append(dict(base, mode='reference', error=_short_error(e)))
                part.save()
                continue
            for mode in others:
                row = dict(base, mode=mode)
                try:
                    got = _parity_outputs(model, x, mode)
                    row.update(fp32=_max_rel(got['fp32'], ref['fp32']), bf16=_max_rel(got['bf16'], ref['bf16']),
                               grad_fp32=_grad_rel(got['grads'], ref['grads']))
                except Exception as e:  # noqa: BLE001
                    row['error'] = _short_error(e)
                part.data['rows'].append(row)
                part.save()
            del model
            with forced_ops_mode(None):
                torch.cuda.empty_cache()


def _parity_outputs(model, x, mode: str) -> dict:
    import torch

    from zoo.ops._dispatch import forced_ops_mode
    res = {}
    with forced_ops_mode(mode):
        model.eval()
        with torch.no_grad():
            res['fp32'] = model(x).float()
            with torch.autocast('cuda', dtype=torch.bfloat16):
                res['bf16'] = model(x).float()
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(2)
        out = model(x)
        weight = torch.randn(out.shape, device=out.device, generator=torch.Generator(out.device).manual_seed(3))
        (out.float() * weight).sum().backward()
        res['grads'] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
    return res


def _grad_rel(got: dict, ref: dict) -> float:
    import torch
    if set(got) != set(ref):
        raise RuntimeError(f'different parameters got gradients: {sorted(set(got) ^ set(ref))[:5]}')
    num = torch.stack([(got[n].float() - ref[n].float()).pow(2).sum() for n in ref]).sum().sqrt()
    den = torch.stack([ref[n].float().pow(2).sum() for n in ref]).sum().sqrt()
    return float(num / den.clamp_min(1e-30))


def _triton_kernel_names() -> set:
    """Names of the @triton.jit functions defined in zoo.ops (as the profiler names their kernels)."""
    names = set()
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith('zoo.ops') or mod is None:
            continue
        for obj in vars(mod).values():
            if not type(obj).__module__.startswith('triton'):
                continue
            fn = obj
            while hasattr(fn, 'fn'):  # Autotuner / Heuristics -> JITFunction -> the Python function
                fn = fn.fn
            if hasattr(fn, '__name__'):
                names.add(fn.__name__)
    return names


def part_kernels(part: Part) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from zoo.ops._dispatch import forced_ops_mode
    for name, share in part.each_model(5):
        with part.guard(name, share):
            batch, side = _realistic(name, part, 8)
            model = _build(name, part.device)
            x = torch.randn(batch, getattr(model, 'in_chans', 3), side, side, device=part.device)
            for autocast in ('fp32', 'bf16'):
                row = dict(model=name, autocast=autocast, size=f'{batch}x3x{side}x{side}')
                ctx = (torch.autocast('cuda', dtype=torch.bfloat16) if autocast == 'bf16'
                       else torch.autocast('cuda', enabled=False))

                def step(model=model, ctx=ctx):
                    with ctx:
                        out = model(x)
                    out.float().mean().backward()
                try:
                    with forced_ops_mode('auto'):
                        model.train()
                        step()  # compile / autotune outside the profile
                        torch.cuda.synchronize()
                        with profile(activities=[ProfilerActivity.CUDA]) as prof:
                            step()
                            torch.cuda.synchronize()
                    kernels = {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}
                    zoo_kernels = _triton_kernel_names()
                    row['triton'] = sorted(k for k in kernels
                                           if any(k == z or k.startswith(z + '_') for z in zoo_kernels))
                    row['sdpa'] = sorted({k[:80] for k in kernels if SDPA_KERNEL.search(k)})
                    row['cuda_kernels'] = len(kernels)
                except Exception as e:  # noqa: BLE001
                    row['error'] = _short_error(e)
                model.zero_grad(set_to_none=True)
                part.data['rows'].append(row)
                part.save()
            del model
            torch.cuda.empty_cache()


def part_speed(part: Part) -> None:
    import types

    import torch

    from zoo.benchmark import _build as _build_for_bench
    from zoo.benchmark import _counterpart, _cuda_peak_mb, _input, _step_fn, _time_once
    from zoo.ops._dispatch import forced_ops_mode
    warmup, runs = (1, 3) if part.quick else (2, 5)
    for name, share in part.each_model(10):
        with part.guard(name, share):
            batch, side = _realistic(name, part, 16 if 'catanet' in name else 256 if name in FAST_BATCH_256 else 128)
            contenders = [(m, '', m) for m in _modes()]
            timm_name = _counterpart(name, 'timm')
            if timm_name.startswith('timm:'):
                contenders.append((timm_name, timm_name, None))
            bench_args = types.SimpleNamespace(device='cuda', dtype='bf16', compile=False, channels_last=False,
                                               img_size=side, optimizer='sgd')
            rows = {tag: dict(model=name, contender=tag, batch=batch, size=side) for tag, _, _ in contenders}
            part.data['rows'] += list(rows.values())
            for mode in ('infer', 'train'):
                steps = {}
                for tag, who, ops in contenders:
                    try:
                        with forced_ops_mode(ops):
                            model = _build_for_bench(who, name, bench_args)
                            step = _step_fn(model, _input(model, batch, bench_args), mode, bench_args)
                            for _ in range(warmup):
                                step()
                        steps[tag] = (step, ops)
                    except Exception as e:  # noqa: BLE001
                        rows[tag]['error'] = f'{mode}: {_short_error(e)}'
                times = {tag: [] for tag in steps}
                for _ in range(runs):
                    if part.out_of_time(2):
                        break
                    for tag, (step, ops) in list(steps.items()):
                        try:
                            with forced_ops_mode(ops):
                                times[tag].append(_time_once(step, 'cuda'))
                        except Exception as e:  # noqa: BLE001
                            rows[tag]['error'] = f'{mode}: {_short_error(e)}'
                            steps.pop(tag)
                for tag, (step, ops) in steps.items():
                    if times[tag]:
                        rows[tag][f'{mode}_ips'] = batch / statistics.median(times[tag])
                        rows[tag][f'{mode}_times_ms'] = [round(t * 1e3, 3) for t in times[tag]]
                    with forced_ops_mode(ops):
                        rows[tag][f'{mode}_mb'] = _cuda_peak_mb(step, 'cuda')
                del steps
                torch.cuda.empty_cache()
                part.save()
                if part.out_of_time(5):
                    break


# -- op table ----------------------------------------------------------------------------------

def _public_ops() -> Dict[str, object]:
    import zoo.ops as ops
    skip = {'HAS_TRITON', 'ops_mode', 'use_triton'}
    return {n: getattr(ops, n) for n in ops.__all__ if n not in skip and not n.endswith('_reference')
            and callable(getattr(ops, n))}


def _describe(value) -> dict:
    import torch
    if isinstance(value, torch.Tensor):
        return dict(shape=list(value.shape), dtype=str(value.dtype).removeprefix('torch.'), stride=list(value.stride()),
                    contiguous=value.is_contiguous(), requires_grad=value.requires_grad)
    return dict(value=repr(value))


def _sig_text(described: dict) -> str:
    short = {'float32': 'f32', 'bfloat16': 'bf16', 'float16': 'f16', 'int64': 'i64', 'int32': 'i32', 'bool': 'b'}
    parts = []
    for k, v in described.items():
        if 'shape' in v:
            parts.append(f'{k}={short.get(v["dtype"], v["dtype"])}[{",".join(map(str, v["shape"]))}]'
                         + ('' if v['contiguous'] else 'nc'))
        else:
            parts.append(f'{k}={v["value"]}')
    return ' '.join(parts)


def _copy_arg(value):
    """A copy with the same strides (the kernels' behaviour may depend on them), detached."""
    import torch
    if not isinstance(value, torch.Tensor):
        return value
    out = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=value.device)
    with torch.no_grad():
        out.copy_(value.detach())
    return out


class OpRecorder:
    """Swaps the public zoo.ops functions that ``zoo.models.*`` modules imported for recording wrappers.

    Only calls a model makes are seen (not the ops' calls to each other inside zoo.ops). Each unique call
    (op, argument shapes / dtypes / strides / grad, autocast) keeps one copy of its real arguments.
    """

    def __init__(self):
        self.calls: Dict[tuple, dict] = {}
        self.autocast = 'fp32'
        self._patched = []

    def __enter__(self):
        import inspect
        ops = _public_ops()
        by_id = {id(fn): name for name, fn in ops.items()}
        for mod_name, mod in list(sys.modules.items()):
            if not mod_name.startswith('zoo.models') or mod is None:
                continue
            for attr, value in list(vars(mod).items()):
                if id(value) in by_id:
                    self._patched.append((mod, attr, value))
                    setattr(mod, attr, self._wrap(by_id[id(value)], value, inspect.signature(value)))
        return self

    def __exit__(self, *exc):
        for mod, attr, value in self._patched:
            setattr(mod, attr, value)
        self._patched.clear()

    def _wrap(self, op: str, fn, sig):
        def recording(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            described = {k: _describe(v) for k, v in bound.arguments.items()}
            key = (op, self.autocast, json.dumps(described, sort_keys=True))
            if key in self.calls:
                self.calls[key]['count'] += 1
            else:
                self.calls[key] = dict(op=op, fn=fn, autocast=self.autocast, args=described, count=1,
                                       values={k: _copy_arg(v) for k, v in bound.arguments.items()})
            return fn(*args, **kwargs)
        return recording


def _op_step(fn, values: dict, described: dict, backward: bool, device: str):
    """A closure running the op once (and its backward with a fixed output gradient)."""
    import torch
    inputs = {k: (v.detach().requires_grad_(described[k].get('requires_grad', False)) if backward and
                  isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in values.items()}
    grads = {}

    def step():
        if not backward:
            with torch.no_grad():
                return fn(**inputs)
        out = fn(**inputs)
        outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                if isinstance(o, torch.Tensor) and o.requires_grad]
        if 'g' not in grads:
            grads['g'] = [torch.randn_like(o) for o in outs]
        torch.autograd.backward(outs, grads['g'])
        for v in inputs.values():
            if isinstance(v, torch.Tensor):
                v.grad = None
    return step


def _time_ms(step, device: str, runs: int) -> float:
    """Median ms per call; calls are repeated inside each timed block so short ops are not all launch latency."""
    from zoo.benchmark import _time_once
    once = _time_once(step, device)
    reps = max(1, min(50, int(0.002 / max(once, 1e-6)))) if device == 'cuda' else 1

    def block():
        for _ in range(reps):
            step()
    return statistics.median(_time_once(block, device) for _ in range(runs)) / reps * 1e3


def part_op_table(part: Part) -> None:
    import torch

    from zoo.models._builder import family_of
    from zoo.ops._dispatch import forced_ops_mode
    modes = _modes()
    part.data.update(modes=modes, setting=dict(device=part.device, torch=torch.__version__, quick=part.quick,
                                               triton=_version('triton'),
                                               date=datetime.datetime.now(datetime.timezone.utc).isoformat()))
    if not part.cuda:
        part.data['note'] = 'CPU smoke run: every mode runs the reference on CPU tensors'
    runs, warmup = (3, 1) if part.quick else (5, 2)
    autocasts = ['fp32', 'bf16'] if part.cuda else ['fp32']
    for name, share in part.each_model(5):
        with part.guard(name, share):
            family = family_of(name)
            batch, side = _realistic(name, part, 16 if 'catanet' in name else 128)
            try:
                model = _build(name, part.device).train()
                x = torch.randn(batch, getattr(model, 'in_chans', 3), side, side, device=part.device)
                with OpRecorder() as rec:
                    for autocast in autocasts:
                        rec.autocast = autocast
                        with torch.autocast(part.device, dtype=torch.bfloat16, enabled=autocast == 'bf16'):
                            model(x)
                del model, x
            except Exception as e:  # noqa: BLE001
                part.data.setdefault('errors', []).append(dict(model=name, error=_short_error(e)))
                part.save()
                continue
            for call in rec.calls.values():
                needs_grad = any(a.get('requires_grad') for a in call['args'].values())
                for backward in ([False, True] if needs_grad else [False]):
                    if part.out_of_time(3):
                        break
                    base = dict(op=call['op'], family=family, model=name, autocast=call['autocast'],
                                **{'pass': 'fwd+bwd' if backward else 'fwd'}, grad=backward,
                                calls_per_forward=call['count'], args=call['args'], signature=_sig_text(call['args']))
                    for mode in modes:
                        row = dict(base, mode=mode, ms=None, error=None)
                        try:
                            with forced_ops_mode(mode), torch.autocast(part.device, dtype=torch.bfloat16,
                                                                       enabled=call['autocast'] == 'bf16'):
                                step = _op_step(call['fn'], call['values'], call['args'], backward, part.device)
                                for _ in range(warmup):
                                    step()
                                row['ms'] = _time_ms(step, part.device, runs)
                        except Exception as e:  # noqa: BLE001
                            row['error'] = _short_error(e)
                        part.data['rows'].append(row)
                part.save()
            rec.calls.clear()
            if part.cuda:
                torch.cuda.empty_cache()


def _version(pkg: str) -> Optional[str]:
    try:
        return __import__(pkg).__version__
    except ImportError:
        return None


if __name__ == '__main__':
    sys.exit(main())
