#!/usr/bin/env python
"""CPU time of zoo's bi-level routing attention reference vs the official BiFormer formulation.

The official legacy BRA (rayleizhu/BiFormer ops/bra_legacy.py) gathers the routed regions out of the concatenated
k|v tensor expanded over the query regions, then runs per-head matmul attention; zoo's reference
(``zoo.ops.routing.routing_attention_reference``) gathers k and v in region layout and runs SDPA. Both are timed
here on BiFormer-T's three routing stages at 224 (n_win 7; topk 1 / 4 / 16), from NHWC q and kv to the NHWC output,
after checking they agree.

    python tools/bench_routing_cpu.py --batch-sizes 1 32 --threads 1
"""
import argparse
import time

import _source_tree  # noqa: F401  (a checkout that was never installed imports its own zoo)
import torch
from zoo.models.biformer import _from_regions, _to_regions
from zoo.ops.routing import routing_attention_reference

STAGES = [(56, 64, 2, 1), (28, 128, 4, 4), (14, 256, 8, 16)]  # map side, dim, heads, topk (BiFormer-T at 224)


def official_formulation(q, kv, n_win, heads, topk, scale, qk_dim):
    """The official steps (region split, detached region means, top-k, expand + gather of k|v, matmul attention)."""
    n, H, W, _ = q.shape
    h, w = H // n_win, W // n_win
    q = q.view(n, n_win, h, n_win, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(n, n_win * n_win, h * w, -1)
    kv = kv.view(n, n_win, h, n_win, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(n, n_win * n_win, h * w, -1)
    p2, w2, ckv = kv.shape[1:]
    logits = (q.mean(2).detach() * scale) @ kv[..., :qk_dim].mean(2).detach().transpose(-2, -1)
    r_idx = logits.topk(topk, dim=-1).indices
    sel = torch.gather(kv.view(n, 1, p2, w2, ckv).expand(-1, p2, -1, -1, -1), 2,
                       r_idx.view(n, p2, topk, 1, 1).expand(-1, -1, -1, w2, ckv))
    k_sel, v_sel = sel.split([qk_dim, ckv - qk_dim], dim=-1)
    d = qk_dim // heads
    k_sel = k_sel.reshape(n * p2, topk, w2, heads, d).permute(0, 3, 4, 1, 2).reshape(n * p2, heads, d, topk * w2)
    v_sel = v_sel.reshape(n * p2, topk, w2, heads, -1).permute(0, 3, 1, 2, 4).reshape(n * p2, heads, topk * w2, -1)
    attn = ((q.reshape(n * p2, w2, heads, d).transpose(1, 2) * scale) @ k_sel).softmax(-1)
    out = attn @ v_sel
    return out.view(n, n_win, n_win, heads, h, w, -1).permute(0, 1, 4, 2, 5, 3, 6).reshape(n, H, W, -1)


def zoo_reference(q, kv, n_win, heads, topk, scale, qk_dim):
    k, v = kv.split([qk_dim, kv.shape[-1] - qk_dim], dim=-1)
    out = routing_attention_reference(*(_to_regions(t, n_win, heads) for t in (q, k, v)), topk, scale)
    return _from_regions(out, n_win, q.shape[1], q.shape[2])


def _time(fn, args, runs):
    fn(*args)
    t0 = time.perf_counter()
    for _ in range(runs):
        fn(*args)
    return (time.perf_counter() - t0) / runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--runs', type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for batch in args.batch_sizes:
        total_off = total_zoo = 0.
        for side, dim, heads, topk in STAGES:
            q, kv = torch.randn(batch, side, side, dim), torch.randn(batch, side, side, 2 * dim)
            call = (q, kv, 7, heads, topk, dim ** -0.5, dim)
            with torch.inference_mode():
                diff = (official_formulation(*call) - zoo_reference(*call)).abs().max().item()
                t_off, t_zoo = _time(official_formulation, call, args.runs), _time(zoo_reference, call, args.runs)
            total_off, total_zoo = total_off + t_off, total_zoo + t_zoo
            print(f'batch {batch:3d} map {side}x{side} topk {topk:2d}: official {t_off * 1e3:8.1f} ms  '
                  f'zoo {t_zoo * 1e3:8.1f} ms  speedup {t_off / t_zoo:.2f}x  (max diff {diff:.1e})')
        print(f'batch {batch:3d} all routing stages: speedup {total_off / total_zoo:.2f}x')


if __name__ == '__main__':
    main()
