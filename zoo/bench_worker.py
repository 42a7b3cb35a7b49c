"""One contender of ``zoo benchmark --compare rev``: a zoo model timed step by step on command.

Run as a script in its own process (``python zoo/bench_worker.py NAME ...``), with ``PYTHONPATH`` pointing at
an unpacked older revision of zoo or at nothing (the installed zoo): two ``zoo`` packages cannot share one
process. It imports nothing from zoo but the package itself, so the same worker drives any revision.

Protocol (one JSON object per stdout line): after building the model (seed 0), it saves the eval-mode output
on a seeded input and the state-dict layout to ``--out``, measures the peak resident-set growth of that first
forward over the built model (of the first training step after it with ``--mode train``), prints
``{"ready": ...}``; then every ``step`` line on stdin runs one step and prints its wall and CPU seconds;
``quit`` (or EOF) ends it.
"""
import argparse
import json
import os
import sys
import time

# running a script puts its own folder (zoo/) first on sys.path: drop it, so `import zoo` finds the package
# chosen by PYTHONPATH (an older revision) or the installed one, and no module of zoo/ shadows a top-level name
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import torch  # noqa: E402


def _status_mb(field_name: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field_name + ':'):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f'{field_name} not in /proc/self/status')


def _step_fn(model, x, mode):
    if mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)
        return step
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        model(x).float().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _peak_mb(fn, measure: bool = True):
    """(fn(), peak resident-set growth during it in MB, or None): fn must be the first work of its kind in this
    process, since the allocator keeps what earlier work freed and later peaks hardly grow."""
    if not measure:
        return fn(), None
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # Linux: reset the peak resident set size (VmHWM) to the current one
    base = _status_mb('VmRSS')
    out = fn()
    return out, _status_mb('VmHWM') - base


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument('name')
    p.add_argument('--batch', type=int, required=True)
    p.add_argument('--img-size', type=int, required=True)
    p.add_argument('--mode', choices=['infer', 'train'], default='infer')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--out', required=True, help='file for the seeded output and the state-dict layout')
    p.add_argument('--no-memory', action='store_true')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import timm

    import zoo
    torch.manual_seed(0)
    model = timm.create_model(args.name)
    torch.manual_seed(1)
    x = torch.randn(args.batch, getattr(model, 'in_chans', 3), args.img_size, args.img_size)
    model.eval()

    def seeded_output():
        with torch.inference_mode():
            return model(x)
    # infer: the memory of the first forward over the built model; train: of the first step after that forward
    out, mem = _peak_mb(seeded_output, not args.no_memory)
    layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    torch.save({'output': out, 'layout': layout}, args.out)
    step = _step_fn(model, x, args.mode)
    if args.mode == 'train':
        mem = _peak_mb(step, not args.no_memory)[1]
    print(json.dumps({'ready': True, 'zoo': os.path.dirname(zoo.__file__), 'mem_mb': mem,
                      'threads': torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != 'step':
            break
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        # wall time, and this process's CPU time (less sensitive to other processes on a busy machine)
        print(json.dumps({'seconds': time.perf_counter() - t0, 'cpu_seconds': time.process_time() - c0}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
