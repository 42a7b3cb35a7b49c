"""A2Mamba's all-states selective scan: the readable specification.

    selective_scan_states(u, delta, A, B, delta_bias=None, delta_softplus=True) -> h   [Bt, D, N, L], fp32

u, delta: [Bt, D, L]; A: [D, N]; B: [Bt, N, L] or [Bt, 1, N, L] (one group shared by every channel);
delta_bias: [D]. All arithmetic in fp32:

    dt_t = softplus(delta_t + delta_bias)          (threshold 20, as in the CUDA kernel)
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t,   h_{-1} = 0

and every h_t is returned in fp32 (fp64 for fp64 inputs) (no C projection, no D skip: A2SSM applies those itself).

Evaluation is chunked so that every exponent is <= 0 (A < 0, dt > 0): inside a chunk of T steps,
h_t = exp(S_t) h_carry + sum_{s<=t} exp(S_t - S_s) b_s with S the within-chunk cumulative log-decay
(masked before the exp), and the carries between chunks come from the same stable form one level up.
Cost O(L*T) per channel eager (the carries are chunked again, recursively), O(L*T + (L/T)^2) in exported graphs;
no Python loop over time; :func:`selective_scan_loop` is the sequential oracle.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .._dispatch import in_graph_capture as _in_graph_capture

__all__ = ['selective_scan_states_reference', 'selective_scan_loop', 'scan_inputs']

# chunk length T. Under graph capture the carries between chunks are one [L/T, L/T] product: O(L*T + (L/T)^2) exps
# per channel, and 16 is the sweet spot at L = 3136. Eager, the carries are chunked again, level by level
# (O(L*T) in all), and short chunks win: 4 is 3x faster than 16 at L = 3136 on CPU (1 thread, batch 1), 5x at batch 8
CHUNK = 16
EAGER_CHUNK = 4


def scan_inputs(u, delta, A, B, delta_bias=None, delta_softplus=True) -> Tuple[torch.Tensor, torch.Tensor]:
    """(log-decay, drive), each [Bt, D, N, L] in fp32: log a_t = dt_t * A and b_t = dt_t * B_t * u_t."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f'selective_scan: u and delta must be [B, D, L] of one shape, got {tuple(u.shape)}, '
                         f'{tuple(delta.shape)}')
    if B.dim() == 4:
        if B.shape[1] != 1:
            raise ValueError('selective_scan: only one B group (G = 1) is supported')
        B = B[:, 0]
    Bt, D, L = u.shape
    if A.shape[0] != D or B.shape != (Bt, A.shape[1], L):
        raise ValueError(f'selective_scan: A {tuple(A.shape)} / B {tuple(B.shape)} do not fit u {tuple(u.shape)}')
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32  # fp32, or fp64 for oracles
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = F.softplus(dt, threshold=20.)
    log_decay = dt[:, :, None, :] * A.to(ct)[None, :, :, None]
    drive = (dt * u.to(ct))[:, :, None, :] * B.to(ct)[:, None, :, :]
    return log_decay, drive


def _stable_prefix(log_decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = sum_{s<=t} exp(sum_{s<r<=t} log_decay_r) drive_s along the last axis (length T), as a masked
    [T, T] product; exponents are masked to -inf above the diagonal before exp."""
    T = log_decay.shape[-1]
    cum = torch.cumsum(log_decay, dim=-1)
    expo = cum[..., :, None] - cum[..., None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=log_decay.device).tril()
    weights = torch.exp(expo.masked_fill(~causal, float('-inf')))
    return torch.matmul(weights, drive.unsqueeze(-1)).squeeze(-1)


def selective_scan_states_reference(u, delta, A, B, delta_bias: Optional[torch.Tensor] = None,
                                    delta_softplus: bool = True, chunk: Optional[int] = None) -> torch.Tensor:
    log_decay, drive = scan_inputs(u, delta, A, B, delta_bias, delta_softplus)
    if chunk is None:
        chunk = CHUNK if _in_graph_capture() else EAGER_CHUNK
    return _chunked_scan(log_decay, drive, chunk)


def _chunked_scan(log_decay: torch.Tensor, drive: torch.Tensor, chunk: int) -> torch.Tensor:
    """h_t = exp(log_decay_t) h_{t-1} + drive_t along the last axis (h_{-1} = 0), in chunks of ``chunk`` steps."""
    L = log_decay.shape[-1]
    n_chunks = (L + chunk - 1) // chunk  # not -(-L // chunk): ONNX integer Div truncates negatives toward 0
    pad = n_chunks * chunk - L
    # padded steps come after the end, so they never reach a real state; under export / compile L is symbolic
    # and the padding must stay in the graph even when the example needs none
    if _in_graph_capture() or pad:
        log_decay, drive = F.pad(log_decay, (0, pad)), F.pad(drive, (0, pad))
    log_decay = log_decay.unflatten(-1, (n_chunks, chunk))
    drive = drive.unflatten(-1, (n_chunks, chunk))
    local = _stable_prefix(log_decay, drive)                  # states with a zero carry-in per chunk
    cum = torch.cumsum(log_decay, dim=-1)                      # within-chunk log-decay from the chunk start
    # carry out of each chunk: the same recurrence over chunks, with each chunk's total decay. Eager with many
    # chunks, it is chunked in turn: O(L/T * T) instead of the one [L/T, L/T] product's O((L/T)^2) (at L = 3136,
    # T = 16: 196 x 196 exps per channel, about as many as all the chunks' own); under capture L is symbolic and the
    # graph keeps the one product
    if not _in_graph_capture() and n_chunks > chunk:
        carry = _chunked_scan(cum[..., -1], local[..., -1], chunk)
    else:
        carry = _stable_prefix(cum[..., -1], local[..., -1])   # [.., n_chunks]: state at each chunk's end
    carry_in = F.pad(carry[..., :-1], (1, 0))                  # state entering each chunk
    h = local + torch.exp(cum) * carry_in[..., None]
    return h.flatten(-2)[..., :L]


def selective_scan_loop(u, delta, A, B, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """The plain sequential recurrence (test oracle; slow)."""
    log_decay, drive = scan_inputs(u, delta, A, B, delta_bias, delta_softplus)
    h = torch.zeros_like(drive[..., 0])
    out = []
    for t in range(drive.shape[-1]):
        h = torch.exp(log_decay[..., t]) * h + drive[..., t]
        out.append(h)
    return torch.stack(out, dim=-1)
