"""Speed and memory of zoo models side by side with their reference, in one run.

    python tools/benchmark.py --models 'efficientvit_m*' --compare timm --batch-sizes 1 32
    zoo benchmark --models zoo_davit_tiny --compare reference --device cuda --dtype bf16 --batch-sizes 256

For every model and setting it measures inference images/s and a training step (forward,
backward, ``--optimizer`` step: AdamW by default) images/s, plus peak memory, for the zoo model and for
its counterpart:

* ``--compare timm``: timm's own model of the same plain name (same weights, so the same
  numbers; falls back to ``reference`` where timm has no such model);
* ``--compare reference``: the same zoo model with ``ZOO_OPS=reference`` (the pure-PyTorch ops);
* ``--compare none``: the zoo model alone;
* ``--compare onnx``: the deployment view (CPU, inference, fp32): the zoo model exported to ONNX
  (``zoo.export_onnx``; files cached in ``--output``/onnx) and run in ONNX Runtime, against the same
  model in PyTorch eager; the "zoo" columns are ONNX Runtime, the ratio is ORT speed / eager speed;
* ``--compare rev [--rev REV]``: the same zoo model at an older git revision of this checkout (default
  ``c4646e6``, whose CPU speed equals the official code's), CPU only. ``git archive REV`` is unpacked into a
  temporary folder as an importable ``zoo`` package and each side runs in its own worker process
  (``zoo/bench_worker.py``; two ``zoo`` packages cannot share a process) with the same thread count, both
  building their weights from seed 0 and reporting the max abs difference of their outputs on one seeded input
  (equal numbers where the state-dict layout is unchanged).

Timing: warm-up, then ``--runs`` timed repetitions alternating zoo / counterpart (so a noisy
machine slows both alike), median reported, ratio = zoo throughput / counterpart throughput.
Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU (Linux) the peak resident-set growth
during one steady step in a fresh subprocess (``--no-cpu-memory`` skips it).
Results go to ``--output`` as JSON, CSV and a markdown table; ``--plot`` also draws a PNG.
"""
import argparse
import contextlib
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from zoo.ops._dispatch import forced_ops_mode

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# main before the CPU speed work of issue 16: its speed equals the official code's
DEFAULT_REV = 'c4646e6'


@dataclass
class Result:
    model: str
    counterpart: str
    mode: str
    batch: int
    img_size: int
    dtype: str
    device: str
    channels_last: bool
    compile: bool
    zoo_ips: float
    ref_ips: Optional[float] = None
    ratio: Optional[float] = None
    zoo_mem_mb: Optional[float] = None
    ref_mem_mb: Optional[float] = None
    zoo_times_ms: List[float] = field(default_factory=list)
    ref_times_ms: List[float] = field(default_factory=list)
    out_max_abs_diff: Optional[float] = None  # --compare rev: |zoo output - old revision's output|, same seed
    cpu_ratio: Optional[float] = None  # --compare rev: the speed ratio by process CPU time instead of wall time


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='zoo benchmark', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['efficientvit_m*'],
                   help='zoo model names or patterns (plain or zoo_ names)')
    p.add_argument('--compare', choices=['timm', 'reference', 'onnx', 'rev', 'none'], default='timm')
    p.add_argument('--rev', default=DEFAULT_REV,
                   help=f'--compare rev: the git revision to compare with (default {DEFAULT_REV})')
    p.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--dtype', choices=sorted(DTYPES), default='fp32', help='autocast dtype (fp32 = no autocast)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--mode', choices=['infer', 'train', 'both'], default='infer')
    p.add_argument('--optimizer', choices=['adamw', 'sgd'], default='adamw', help='the training step\'s optimizer')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile both models')
    p.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--runs', type=int, default=10)
    p.add_argument('--no-cpu-memory', action='store_true', help='skip the CPU peak-memory subprocesses')
    p.add_argument('--output', default='bench_results', help='folder for results.{json,csv,md}')
    p.add_argument('--plot', action='store_true', help='also write throughput.png')
    p.add_argument('--ops', nargs='+', default=None, metavar='OP',
                   help='kernel-level table instead of models: zoo.ops OPs (attention) vs their reference, '
                        'forward and forward+backward, at the shapes the families use (CUDA)')
    p.add_argument('--_memprobe', nargs=2, metavar=('WHICH', 'NAME'), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error('--device cuda: no CUDA device is available')
    if args.compare == 'onnx' and (args.device != 'cpu' or args.mode != 'infer' or args.dtype != 'fp32'
                                   or args.compile or args.channels_last):
        p.error('--compare onnx measures CPU fp32 inference (ONNX Runtime CPU vs PyTorch eager): use it with '
                '--device cpu --mode infer --dtype fp32, without --compile / --channels-last')
    if args.compare == 'rev' and (args.device != 'cpu' or args.dtype != 'fp32' or args.compile
                                  or args.channels_last):
        p.error('--compare rev measures CPU fp32 eager (this checkout vs an older revision): use it with '
                '--device cpu --dtype fp32, without --compile / --channels-last')
    if min(args.batch_sizes) < 1 or args.img_size < 16 or args.runs < 1:
        p.error('batch sizes must be >= 1, --img-size >= 16 and --runs >= 1')
    return args


# ----------------------------------------------------------------------------------------------
# building the pair

def _resolve_models(patterns: List[str]) -> List[str]:
    import zoo
    from zoo.errors import UserError
    names = []
    for pat in patterns:
        try:
            found = zoo.list_models(pat) if any(c in pat for c in '*?[') else [zoo.resolve_model_name(pat)]
        except ValueError as e:
            raise UserError(f'--models: {e}') from None
        if not found:
            raise UserError(f'--models: no zoo model matches {pat!r}')
        names += [n for n in found if n not in names]
    return names


def _counterpart(name: str, compare: str) -> str:
    """'timm:<name>' for timm's model, 'reference' for the zoo model on the reference ops, or ''."""
    import timm
    if compare == 'none':
        return ''
    if compare == 'onnx':
        return 'eager'
    if compare == 'rev':
        return 'rev'
    plain = name.removeprefix('zoo_')
    if compare == 'timm':
        fn = timm.models.model_entrypoint(plain) if timm.is_model(plain) else None
        if fn is not None and not fn.__module__.startswith('zoo.'):
            return f'timm:{plain}'
    return 'reference'


def _build(which: str, name: str, args) -> torch.nn.Module:
    import timm
    torch.manual_seed(0)
    model = timm.create_model(which[len('timm:'):] if which.startswith('timm:') else name)
    model.to(args.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _input(model, batch: int, args) -> torch.Tensor:
    in_chans = getattr(model, 'in_chans', 3)
    x = torch.randn(batch, in_chans, args.img_size, args.img_size, device=args.device)
    return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x


def _step_fn(model, x, mode: str, args) -> Callable[[], None]:
    autocast = (torch.autocast(device_type=x.device.type, dtype=DTYPES[args.dtype])
                if args.dtype != 'fp32' else contextlib.nullcontext())
    fwd = torch.compile(model) if args.compile else model
    if mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                fwd(x)
        return step
    model.train()
    opt = (torch.optim.SGD(model.parameters(), lr=1e-4) if args.optimizer == 'sgd'
           else torch.optim.AdamW(model.parameters(), lr=1e-4))

    def step():
        with autocast:
            loss = fwd(x).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _sync(device: str):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _time_once(step, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# memory

def _cuda_peak_mb(step, device) -> float:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def _status_mb(field_name: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field_name + ':'):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f'{field_name} not in /proc/self/status')


def _cpu_peak_mb(which: str, name: str, mode: str, batch: int, args) -> Optional[float]:
    """Peak RSS growth of a fresh process that builds the model and runs two steps."""
    cmd = [sys.executable, '-m', 'zoo.benchmark', '--_memprobe', which or 'zoo', name,
           '--mode', mode, '--batch-sizes', str(batch), '--img-size', str(args.img_size), '--dtype', args.dtype,
           '--device', 'cpu', '--optimizer', args.optimizer] + (['--channels-last'] if args.channels_last else [])
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    env = dict(os.environ, ZOO_OPS='reference' if which == 'reference' else os.environ.get('ZOO_OPS', 'auto'))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, check=True).stdout
        return float(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
        print(f'  (cpu memory probe failed for {which or name}: {e})', file=sys.stderr)
        return None


def _memprobe(args) -> int:
    which, name = args._memprobe
    model = _build(which if which.startswith('timm:') else '', name, args)
    x = _input(model, args.batch_sizes[0], args)
    step = _step_fn(model, x, args.mode, args)
    step()  # first step allocates optimizer state and caches; the peak of a steady step is what we report
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # Linux: reset the peak resident set size (VmHWM) to the current one
    base = _status_mb('VmRSS')
    step()
    print(f'{_status_mb("VmHWM") - base:.1f}')
    return 0


# ----------------------------------------------------------------------------------------------

def _onnx_step(name: str, batch: int, args) -> Callable[[], None]:
    """ONNX Runtime on the zoo model's export (made once per model and size, dynamic batch, then reused)."""
    from zoo.export_onnx import build_model, export_model, ort_session
    path = os.path.join(args.output, 'onnx', f'{name}_{args.img_size}.onnx')
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + '.partial.onnx'
        export_model(build_model(name), tmp, (args.img_size, args.img_size))
        os.replace(tmp, path)
    session = ort_session(path)
    feed = {session.get_inputs()[0].name: torch.randn(batch, 3, args.img_size, args.img_size).numpy()}
    return lambda: session.run(None, feed)


# ----------------------------------------------------------------------------------------------
# --compare rev: this checkout against an older revision, each in its own worker process

def unpack_revision(rev: str, dest: str) -> str:
    """``git archive REV`` of this checkout unpacked under dest as an importable ``zoo`` package
    (zoo/, models/ -> zoo/models, ops/ -> zoo/ops, weights/ beside it); returns the folder for PYTHONPATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = ['git', '-C', root]
    try:
        commit = subprocess.run(git + ['rev-parse', '--verify', '--quiet', rev + '^{commit}'], check=True,
                                capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f'zoo benchmark --compare rev: {rev!r} is not a commit of a git checkout at {root} '
                         '(the mode needs zoo installed from a git clone)') from None
    src = os.path.join(dest, 'src')
    os.makedirs(src)
    archive = subprocess.run(git + ['archive', '--format=tar', commit], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(src, filter='data')
    tree = os.path.join(dest, 'tree')
    os.makedirs(tree)
    os.replace(os.path.join(src, 'zoo'), os.path.join(tree, 'zoo'))
    for sub in ('models', 'ops'):
        os.replace(os.path.join(src, sub), os.path.join(tree, 'zoo', sub))
    if os.path.isdir(os.path.join(src, 'weights')):
        os.replace(os.path.join(src, 'weights'), os.path.join(tree, 'weights'))
    return tree


class _Worker:
    """A ``zoo/bench_worker.py`` process: one model built and stepped on command."""

    def __init__(self, name: str, mode: str, batch: int, args, pythonpath: Optional[str], out: str):
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bench_worker.py'), name,
               '--batch', str(batch), '--img-size', str(args.img_size), '--mode', mode, '--out', out]
        cmd += (['--threads', str(args.threads)] if args.threads else []) + (
            ['--no-memory'] if args.no_cpu_memory else [])
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
        if pythonpath:
            env['PYTHONPATH'] = pythonpath
        # run from the output folder: a source checkout as the working directory would be importable as `zoo`
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=os.path.dirname(out))
        self.out = out

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'benchmark worker exited with code {self.proc.wait()} (its error is above)')
        return json.loads(line)

    def ready(self) -> dict:
        return self._reply()

    def step(self) -> Tuple[float, float]:
        """(wall seconds, CPU seconds) of one step."""
        self.proc.stdin.write('step\n')
        self.proc.stdin.flush()
        reply = self._reply()
        return reply['seconds'], reply['cpu_seconds']

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def _output_diff(new_file: str, old_file: str) -> Optional[float]:
    """Max abs difference of the two seeded outputs; None where the weights cannot be the same."""
    new, old = (torch.load(f, weights_only=True) for f in (new_file, old_file))
    if new['layout'] != old['layout'] or new['output'].shape != old['output'].shape:
        return None
    return (new['output'].double() - old['output'].double()).abs().max().item()


def bench_rev_pair(name: str, mode: str, batch: int, args) -> Result:
    """This checkout's model against the same model at ``--rev``, two workers stepped alternately."""
    workdir = os.path.join(args._rev_dir, 'runs')
    os.makedirs(workdir, exist_ok=True)
    workers = {}
    try:
        for tag, path in (('zoo', None), ('ref', args._rev_tree)):
            workers[tag] = _Worker(name, mode, batch, args, path, os.path.join(workdir, f'{tag}.pt'))
        info = {tag: w.ready() for tag, w in workers.items()}
        if info['zoo']['zoo'] == info['ref']['zoo']:
            raise RuntimeError(f'both workers imported zoo from {info["zoo"]["zoo"]}')
        times = {tag: [] for tag in workers}
        cpu = {tag: [] for tag in workers}
        for i in range(args.warmup + args.runs):
            for tag, w in workers.items():
                t, c = w.step()
                if i >= args.warmup:
                    times[tag].append(t)
                    cpu[tag].append(c)
    finally:
        for w in workers.values():
            w.close()
    med = {tag: statistics.median(t) for tag, t in times.items()}
    return Result(
        model=name, counterpart=f'rev:{args.rev}', mode=mode, batch=batch, img_size=args.img_size, dtype=args.dtype,
        device=args.device, channels_last=False, compile=False, zoo_ips=batch / med['zoo'],
        ref_ips=batch / med['ref'], ratio=med['ref'] / med['zoo'], zoo_mem_mb=info['zoo']['mem_mb'],
        ref_mem_mb=info['ref']['mem_mb'], zoo_times_ms=[round(t * 1e3, 3) for t in times['zoo']],
        ref_times_ms=[round(t * 1e3, 3) for t in times['ref']],
        out_max_abs_diff=_output_diff(workers['zoo'].out, workers['ref'].out),
        cpu_ratio=statistics.median(cpu['ref']) / statistics.median(cpu['zoo']))


def bench_pair(name: str, which: str, mode: str, batch: int, args) -> Result:
    """Time the zoo model and its counterpart, interleaved; measure their peak memory."""
    if which == 'rev':
        return bench_rev_pair(name, mode, batch, args)
    steps = {}
    if which == 'eager':  # --compare onnx: ONNX Runtime in the zoo columns, the eager model as the counterpart
        steps['zoo'] = (_onnx_step(name, batch, args), None)
        model = _build('', name, args)
        steps['ref'] = (_step_fn(model, _input(model, batch, args), mode, args), None)
    else:
        contenders = [('zoo', '', None)]
        if which:
            contenders.append(('ref', which, 'reference' if which == 'reference' else None))
        for tag, who, ops in contenders:
            with forced_ops_mode(ops):
                model = _build(who, name, args)
                steps[tag] = (_step_fn(model, _input(model, batch, args), mode, args), ops)
    times = {tag: [] for tag in steps}
    for _ in range(args.warmup):
        for tag, (step, ops) in steps.items():
            with forced_ops_mode(ops):
                step()
    for _ in range(args.runs):
        for tag, (step, ops) in steps.items():
            with forced_ops_mode(ops):
                times[tag].append(_time_once(step, args.device))
    mem = {}
    for tag, (step, ops) in steps.items():
        if args.device.startswith('cuda'):
            with forced_ops_mode(ops):
                mem[tag] = _cuda_peak_mb(step, args.device)
        elif not args.no_cpu_memory and which != 'eager':
            mem[tag] = _cpu_peak_mb(which if tag == 'ref' else '', name, mode, batch, args)
    med = {tag: statistics.median(t) for tag, t in times.items()}
    res = Result(
        model=name, counterpart=which or '-', mode=mode, batch=batch, img_size=args.img_size, dtype=args.dtype,
        device=args.device, channels_last=args.channels_last, compile=args.compile,
        zoo_ips=batch / med['zoo'], zoo_mem_mb=mem.get('zoo'),
        zoo_times_ms=[round(t * 1e3, 3) for t in times['zoo']])
    if 'ref' in med:
        res.ref_ips = batch / med['ref']
        res.ratio = res.zoo_ips / res.ref_ips
        res.ref_mem_mb = mem.get('ref')
        res.ref_times_ms = [round(t * 1e3, 3) for t in times['ref']]
    return res


def _fmt(v, spec):
    return '-' if v is None else format(v, spec)


def markdown_table(results: List[Result]) -> str:
    lines = ['| model | vs | mode | batch | zoo img/s | ref img/s | speed ratio | zoo MB | ref MB | max abs diff |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        lines.append(f'| {r.model} | {r.counterpart} | {r.mode} | {r.batch} | {r.zoo_ips:.1f} | '
                     f'{_fmt(r.ref_ips, ".1f")} | {_fmt(r.ratio, ".2f")} | {_fmt(r.zoo_mem_mb, ".0f")} | '
                     f'{_fmt(r.ref_mem_mb, ".0f")} | {_fmt(r.out_max_abs_diff, ".1e")} |')
    return '\n'.join(lines)


def _write_atomic(path: str, text: str):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(results: List[Result], args) -> None:
    os.makedirs(args.output, exist_ok=True)
    setting = dict(device=args.device, dtype=args.dtype, img_size=args.img_size, threads=torch.get_num_threads(),
                   channels_last=args.channels_last, compile=args.compile, torch=torch.__version__)
    _write_atomic(os.path.join(args.output, 'results.json'),
                  json.dumps(dict(setting=setting, results=[asdict(r) for r in results]), indent=1))
    rows = [asdict(r) for r in results]
    for row in rows:
        row.pop('zoo_times_ms'), row.pop('ref_times_ms')
    tmp = os.path.join(args.output, 'results.csv.tmp')
    with open(tmp, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(args.output, 'results.csv'))
    header = ', '.join(f'{k}={v}' for k, v in setting.items())
    _write_atomic(os.path.join(args.output, 'results.md'), f'{header}\n\n{markdown_table(results)}\n')
    if args.plot:
        _plot(results, os.path.join(args.output, 'throughput.png'))


def _plot(results: List[Result], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('--plot needs matplotlib (pip install matplotlib)', file=sys.stderr)
        return
    labels = [f'{r.model.removeprefix("zoo_")}\n{r.mode} b{r.batch}' for r in results]
    xs = range(len(results))
    fig, ax = plt.subplots(figsize=(max(6, len(results) * 0.9), 4))
    ax.bar([x - 0.2 for x in xs], [r.zoo_ips for r in results], 0.4, label='zoo')
    ax.bar([x + 0.2 for x in xs], [r.ref_ips or 0 for r in results], 0.4, label='counterpart')
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel('images / s')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path + '.tmp.png', dpi=120)
    os.replace(path + '.tmp.png', path)
    plt.close(fig)


# op name -> list of (label, builder(device, dtype) -> (fn_args tuple)) at the shapes the families use
def _attention_cases():
    def mk(B, H, N, D, bias_batches):
        def build(device, dtype):
            t = lambda *s: torch.randn(*s, device=device, dtype=dtype, requires_grad=True)  # noqa: E731
            bias = t(bias_batches, H, N, N) if bias_batches else None
            return t(B, H, N, D), t(B, H, N, D), t(B, H, N, D), bias
        return build
    return [
        ('EfficientViT 7x7 window, 1 head d16', mk(4096, 1, 49, 16, 1)),
        ('DaViT 7x7 windows, 3 heads d32', mk(2048, 3, 49, 32, 1)),
        ('MOAT 14x14 windows, d32', mk(512, 8, 196, 32, 1)),
        ('per-window bias (Bb=64), 8x8', mk(4096, 4, 64, 32, 64)),
    ]


def bench_ops(args) -> int:
    from zoo.ops import attention, attention_reference
    ops = {'attention': (attention, attention_reference, _attention_cases())}
    dtype = DTYPES[args.dtype]
    lines = ['| op | case | mode | zoo ms | reference ms | speed ratio |', '|---|---|---|---:|---:|---:|']
    for name in args.ops:
        if name not in ops:
            raise SystemExit(f'zoo benchmark: unknown op {name!r}; one of {sorted(ops)}')
        fast, ref, cases = ops[name]
        for label, build in cases:
            inputs = build(args.device, dtype)
            for mode in ('fwd', 'fwd+bwd'):
                def run(fn):
                    def step():
                        out = fn(*inputs)
                        if mode == 'fwd+bwd':
                            out.float().sum().backward()
                    return step
                times = {'zoo': [], 'ref': []}
                steps = {'zoo': run(fast), 'ref': run(ref)}
                for _ in range(args.warmup):
                    for s in steps.values():
                        s()
                for _ in range(args.runs):
                    for tag, s in steps.items():
                        times[tag].append(_time_once(s, args.device))
                z, r = statistics.median(times['zoo']) * 1e3, statistics.median(times['ref']) * 1e3
                lines.append(f'| {name} | {label} | {mode} | {z:.3f} | {r:.3f} | {r / z:.2f} |')
                print(lines[-1], flush=True)
    os.makedirs(args.output, exist_ok=True)
    _write_atomic(os.path.join(args.output, 'ops.md'), '\n'.join(lines) + '\n')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memprobe:
        return _memprobe(args)
    if args.ops:
        return bench_ops(args)
    from zoo.errors import run_command
    names = []
    status = run_command('zoo benchmark', lambda: names.extend(_resolve_models(args.models)))
    if status:
        return status
    if args.compare == 'rev':
        with tempfile.TemporaryDirectory(prefix='zoo-bench-rev-') as tmp:
            args._rev_dir = tmp
            args._rev_tree = unpack_revision(args.rev, tmp)
            return _bench_models(names, args)
    return _bench_models(names, args)


def _bench_models(names: List[str], args) -> int:
    modes = ['infer', 'train'] if args.mode == 'both' else [args.mode]
    results = []
    print(f'device={args.device} dtype={args.dtype} img={args.img_size} threads={torch.get_num_threads()} '
          f'runs={args.runs} compare={args.compare}')
    for name in names:
        which = _counterpart(name, args.compare)
        for mode in modes:
            for batch in args.batch_sizes:
                if mode == 'train' and batch < 2:
                    print(f'{name:28s} train b{batch}: skipped (BatchNorm needs a batch of 2+ to train)')
                    continue
                r = bench_pair(name, which, mode, batch, args)
                results.append(r)
                print(f'{name:28s} {mode:5s} b{batch:<4d} zoo {r.zoo_ips:9.1f} img/s'
                      + (f' | {r.counterpart} {r.ref_ips:9.1f} img/s | ratio {r.ratio:.2f}' if r.ref_ips else '')
                      + (f' | by CPU time {r.cpu_ratio:.2f}' if r.cpu_ratio is not None else '')
                      + (f' | outputs differ by {r.out_max_abs_diff:.2e}' if r.out_max_abs_diff is not None else ''),
                      flush=True)
    write_results(results, args)
    print()
    print(markdown_table(results))
    print(f'\nwritten to {args.output}/results.{{json,csv,md}}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
