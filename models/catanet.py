"""CATANet: Efficient Content-Aware Token Aggregation for Lightweight Image Super-Resolution (CVPR 2025).

Paper: https://arxiv.org/abs/2503.06896 — official code: https://github.com/EquationWalker/CATANet (Apache-2.0).

An image-to-image model (x2 / x3 / x4 super-resolution), not a classifier: ``is_classifier = False``, the cfg has
``num_classes=0``, no pooling and no classifier. ``forward(lr)`` returns the SR image; ``forward_features`` the deep
features at LR resolution; ``forward_intermediates`` the output of every TAB+LRSA block.

Each of the 8 blocks is
* a Token Aggregation Block (TAB): tokens are assigned to learned, shared token centres (buffers ``means``: they
  are part of the state dict and required at inference) by cosine similarity, sorted by cluster (STABLE: ties in
  token order), cut into groups; each group attends to its own and the next group (IASA) plus, separately
  softmaxed, to the centres (IRCA); then a conv feed-forward;
* a local overlapping-patch attention (LRSA: ps x ps patches, step ps - 2, last row/column snapped to the border,
  overlaps averaged as the official code does) and a conv feed-forward;
* a 3x3 conv with a residual around the block.

Differences from the official code (intended): the stable sort is done as an argsort of unique keys
(cluster * N + position), which is the stable order under any sort and exports to ONNX; inputs with a side below the
largest patch size (28) are reflect-padded and the output cropped (the official code silently crops patches to 1x1
there); crops/pastes are gathers/scatters instead of Python loops over patches.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from zoo.ops import attention
from zoo.ops._dispatch import in_graph_capture

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['CATANet']


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, H*d] -> [B, H, N, d]."""
    B, N, C = t.shape
    return t.reshape(B, N, heads, C // heads).transpose(1, 2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """[B, H, N, d] -> [B, N, H*d]."""
    B, H, N, d = t.shape
    return t.transpose(1, 2).reshape(B, N, H * d)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sums (k-means centres, patch reassembly) run in fp32 for half / bf16 inputs and in the input dtype when it
    is fp32 or wider (a float64 model stays float64 throughout)."""
    return torch.promote_types(dtype, torch.float32)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attention(q, k, v)`` (scale dk ** -0.5) for q/k head dim dk below v's dv (9 vs 10 in CATANet).

    PyTorch's fused CPU attention kernel needs equal head dims and otherwise falls back to its unfused math path
    (~9x slower here, and it materialises every score matrix: gigabytes at 224 px). Zero-padding q and k to dv
    leaves every q . k unchanged, so in eager CPU runs they are padded and the scale passed explicitly; exports,
    scripting and the GPU kernels get the unpadded tensors. A test holds this to the plain call.
    """
    dk, dv = q.shape[-1], v.shape[-1]
    if dk >= dv or q.device.type != 'cpu' or in_graph_capture():
        return attention(q, k, v)
    return attention(F.pad(q, (0, dv - dk)), F.pad(k, (0, dv - dk)), v, scale=dk ** -0.5)


def _assign(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the most cosine-similar centre for each token: x [B, N, C], centres [M, C] -> [B, N]."""
    scores = torch.einsum('bnc,mc->bnm', F.normalize(x, dim=-1), F.normalize(centres, dim=-1))
    return scores.argmax(dim=-1)


@torch.no_grad()
def _stable_cluster_order(assign: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Token order sorted by cluster id with ties kept in token order: [B, N] -> permutation [B, N].

    The keys cluster * N + position are unique, so any sort (ONNX TopK included) gives the stable order.
    """
    N = assign.shape[-1]
    pos = torch.arange(N, device=assign.device)
    return torch.argsort(assign * N + pos, dim=-1)


def _wrap_once(idx: torch.Tensor, n) -> torch.Tensor:
    """``idx % n`` for -n <= idx < 2n without a tensor-by-scalar remainder (n may be a symbolic size, which the ONNX
    exporter cannot pass to Mod). Callers: pad lengths below 2n (pad_n <= M << N, tail = pad_n + gs < 2 * gs <= 2N)."""
    return torch.where(idx < 0, idx + n, torch.where(idx >= n, idx - n, idx))


def _center_step(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """One batched spherical k-means step (official ``center_iter``) on unit-norm x [B, N, C] and centres [M, C].

    New centre = normalised sum (over batch and tokens) of the tokens assigned to it; empty clusters keep theirs.
    """
    B, N, C = x.shape
    M = centres.shape[0]
    buckets = (x @ centres.t()).argmax(dim=-1)  # [B, N]
    counts = torch.zeros(M, device=x.device, dtype=torch.long).index_add_(
        0, buckets.flatten(), torch.ones_like(buckets.flatten()))
    # sums accumulate in at least fp32: safer in half precision, and ONNX Runtime's CPU ScatterElements cannot add
    # in fp16
    acc = _accumulation_dtype(x.dtype)
    sums = x.new_zeros(M, C, dtype=acc).index_add(0, buckets.flatten(), x.reshape(B * N, C).to(acc))
    new = F.normalize(sums, dim=-1).to(centres.dtype)
    return torch.where((counts == 0).unsqueeze(-1), centres, new)


class ConvFFN(nn.Module):
    """Linear -> GELU -> y + GELU(DWConv5x5(y)) -> Linear, on tokens [B, N, C] of an H x W map."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 5):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.dwconv = _DWConv(hidden_dim, kernel_size)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        # measured on CPU (one thread): 1.3-1.8x faster for one image, ~1.25x slower for a batch of 8 at 64x64
        # (oneDNN's batched channels-first depthwise conv), so only single images take it
        if x.shape[0] == 1 and x.device.type == 'cpu' and not in_graph_capture():
            return self._forward_channels_first(x, size)
        return self._forward_tokens(x, size)

    def _forward_tokens(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """The readable form (the specification): token-major hidden map, transposed around the conv."""
        x = self.act(self.fc1(x))
        x = x + self.dwconv(x, size)
        return self.fc2(x)

    def _forward_channels_first(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """:meth:`_forward_tokens` with the hidden map made channels-first by fc1 itself (W1 @ x^T) and read back
        by fc2 through a transposed GEMM operand: the wide (hidden-dim) map is never transposed in memory. On CPU
        those transposing copies (and the conv's own re-layout of a channels-last view) cost more than the
        arithmetic."""
        B, N, _ = x.shape
        w1, w2 = self.fc1.weight, self.fc2.weight
        h = torch.baddbmm(self.fc1.bias[:, None], w1.expand(B, -1, -1), x.transpose(1, 2))  # [B, hidden, N]
        h = self.act(h)
        h = h + self.dwconv.depthwise_conv(h.view(B, -1, size[0], size[1])).flatten(2)
        return torch.baddbmm(self.fc2.bias, h.transpose(1, 2), w2.t().expand(B, -1, -1))  # [B, N, dim]


class _DWConv(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 5):
        super().__init__()
        # official key layout: dwconv.depthwise_conv.0.{weight,bias}
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, 1, (kernel_size - 1) // 2, groups=dim), nn.GELU())

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        x = x.transpose(1, 2).reshape(B, C, size[0], size[1])
        return self.depthwise_conv(x).flatten(2).transpose(1, 2)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        return self.fn(self.norm(x), *args)


# ----------------------------------------------------------------------------------------------
# TAB: token aggregation

class IRCA(nn.Module):
    """Key/value projections of the token centres (inter-group cross-attention to the centres)."""

    def __init__(self, dim: int, qk_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_k = nn.Linear(dim, qk_dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)

    def forward(self, centres: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """centres [M, C] -> k [H, M, dk], v [H, M, dv]."""
        k, v = self.to_k(centres), self.to_v(centres)
        return _split_heads(k[None], self.heads)[0], _split_heads(v[None], self.heads)[0]


class IASA(nn.Module):
    """Intra-group attention over cluster-sorted tokens (own + next group) plus attention to the centres."""

    def __init__(self, dim: int, qk_dim: int, heads: int, group_size: int):
        super().__init__()
        self.heads = heads
        self.group_size = group_size
        self.to_q = nn.Linear(dim, qk_dim, bias=False)
        self.to_k = nn.Linear(dim, qk_dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, order: torch.Tensor, k_c: torch.Tensor, v_c: torch.Tensor) -> torch.Tensor:
        """x [B, N, C] (normalised tokens), order [B, N] (cluster-sorted permutation), k_c/v_c [H, M, d]."""
        B, N, C = x.shape
        gs = min(N, self.group_size)
        ng = (N + gs - 1) // gs
        pad_n = ng * gs - N
        # sorted sequence padded with its own reversed tail (official: cat(t, flip(t[N - P:N]))); queries need
        # pad_n extra tokens, keys/values pad_n + gs so that group g sees groups g and g + 1
        tail = pad_n + gs
        tail_idx = _wrap_once(N - 1 - torch.arange(tail, device=x.device), N)  # tail < 2N: one wrap is enough
        seq_idx = torch.cat([torch.arange(N, device=x.device), tail_idx])
        src = order[:, seq_idx]  # [B, (ng + 1) * gs] token indices
        xs = torch.gather(x, 1, src.unsqueeze(-1).expand(-1, -1, C))

        q = self.to_q(xs[:, :ng * gs])
        k = self.to_k(xs).unfold(1, 2 * gs, gs)  # [B, ng, dk, 2gs]: overlapping windows, a view
        v = self.to_v(xs).unfold(1, 2 * gs, gs)
        # explicit sizes, no -1: a batch of 0 images has no elements to infer a dimension from
        q = q.reshape(B * ng, gs, self.heads, q.shape[-1] // self.heads).transpose(1, 2)  # [B*ng, H, gs, dk]
        k = k.reshape(B * ng, self.heads, k.shape[-2] // self.heads, 2 * gs).transpose(-1, -2)  # [B*ng, H, 2gs, dk]
        v = v.reshape(B * ng, self.heads, v.shape[-2] // self.heads, 2 * gs).transpose(-1, -2)
        out = _attend(q, k, v)  # intra-group: own + next group
        out = out.transpose(1, 2).reshape(B, ng * gs, C)[:, :N]
        # back to token order (order is a permutation: scatter == un-permute)
        out = torch.scatter(out, 1, order.unsqueeze(-1).expand(-1, -1, C), out)

        # attention to the centres is per token, so it needs neither the sort nor the groups
        q_tok = _split_heads(self.to_q(x), self.heads)
        out_c = _attend(q_tok, k_c.unsqueeze(0).expand(B, -1, -1, -1), v_c.unsqueeze(0).expand(B, -1, -1, -1))
        return self.proj(out + _merge_heads(out_c))


class TAB(nn.Module):
    """Token Aggregation Block with shared learned token centres (``means`` buffer, EMA-updated in training)."""

    def __init__(
            self,
            dim: int,
            qk_dim: int,
            mlp_dim: int,
            heads: int,
            n_iter: int = 3,
            num_tokens: int = 8,
            group_size: int = 128,
            ema_decay: float = 0.999,
    ):
        super().__init__()
        self.n_iter = n_iter
        self.ema_decay = ema_decay
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(dim)
        self.mlp = PreNorm(dim, ConvFFN(dim, mlp_dim))
        self.irca_attn = IRCA(dim, qk_dim, heads)
        self.iasa_attn = IASA(dim, qk_dim, heads, group_size)
        # the centres are state, not parameters: saved/loaded with the model, required at inference
        self.register_buffer('means', torch.randn(num_tokens, dim))
        self.register_buffer('initted', torch.tensor(False))
        self.conv1x1 = nn.Conv2d(dim, dim, 1, bias=False)
        # under gradient checkpointing the block is re-run in backward: the EMA update is then deferred to the
        # next training forward, so the recomputation sees the same centres and the update happens once
        self.defer_ema = False
        self._pending_centres: Optional[torch.Tensor] = None

    @torch.no_grad()
    def _update_centres(self, centres: torch.Tensor):
        if not bool(self.initted):
            self.means.copy_(centres)
            self.initted.fill_(True)
        else:
            self.means.mul_(self.ema_decay).add_(centres, alpha=1 - self.ema_decay)

    @torch.no_grad()
    def flush_pending_update(self):
        if self._pending_centres is not None:
            self._update_centres(self._pending_centres)
            self._pending_centres = None

    def _initial_centres(self, x: torch.Tensor) -> torch.Tensor:
        """Before the first training step: means of M chunks of the flip-padded token sequence (official)."""
        B, N, C = x.shape
        M = self.num_tokens
        pad_n = M - N % M  # a full extra chunk when N % M == 0, as the official code does
        idx = torch.cat([torch.arange(N, device=x.device), N - 1 - _wrap_once(torch.arange(pad_n, device=x.device), N)])
        padded = x[:, idx]
        chunk = (N + pad_n) // M  # explicit sizes, no -1: a batch of 0 images has no elements to infer one from
        return padded.reshape(B, M, chunk, C).transpose(0, 1).reshape(M, B * chunk, C).mean(dim=1).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        x = x.flatten(2).transpose(1, 2)
        residual = x
        x = self.norm(x)
        if in_graph_capture():
            # no data-dependent branch in an exported / compiled graph: select between both candidates
            centres = torch.where(self.initted, self.means, self._initial_centres(x)).detach()
        elif bool(self.initted):
            centres = self.means.detach()
        else:
            centres = self._initial_centres(x)

        if self.training:
            with torch.no_grad():
                xn = F.normalize(x, dim=-1)
                for _ in range(self.n_iter - 1):
                    centres = _center_step(xn, F.normalize(centres, dim=-1))
            centres = _center_step(F.normalize(x, dim=-1), F.normalize(centres, dim=-1))
        k_c, v_c = self.irca_attn(centres)
        centres = centres.detach()

        with torch.no_grad():
            order = _stable_cluster_order(_assign(x, centres), self.num_tokens)
        y = self.iasa_attn(x, order, k_c, v_c)
        y = self.conv1x1(y.transpose(1, 2).reshape(B, C, H, W))
        x = residual + y.flatten(2).transpose(1, 2)
        x = self.mlp(x, (H, W)) + x

        if self.training and x.shape[0] > 0:  # an empty batch has no centres to learn (its means would be NaN)
            if self.defer_ema:
                self._pending_centres = centres
            else:
                self._update_centres(centres)
        return x.transpose(1, 2).reshape(B, C, H, W)


# ----------------------------------------------------------------------------------------------
# LRSA: local overlapping-patch attention

class Attention(nn.Module):
    """Plain multi-head self-attention on tokens (q/k dim qk_dim, v dim dim, no biases)."""

    def __init__(self, dim: int, heads: int, qk_dim: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, qk_dim, bias=False)
        self.to_k = nn.Linear(dim, qk_dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(f(x), self.heads) for f in (self.to_q, self.to_k, self.to_v))
        return self.proj(_merge_heads(_attend(q, k, v)))


def _patch_starts(size: int, ps: int) -> List[int]:
    """Official patch starts along one axis: step ps - 2, the last patch snapped to the border.

    (The official ``patch_divide`` switches to step ps when both sides equal ps; that yields the same single patch.)
    """
    step = ps - 2
    return [min(i, size - ps) for i in range(0, size + step - ps, step)]


def _overlap_divisor(size: int, ps: int) -> torch.Tensor:
    """Per-position divisor of the official ``patch_reverse``: halved once for every overlap strip it lies in."""
    step = ps - 2
    div = torch.ones(size)
    for i in range(step, size + step - ps, step):
        top = size - ps if i + ps > size else i
        div[top:i + ps - step] *= 2
    return div


def _patch_starts_graph(size, ps: int, device=None) -> torch.Tensor:
    """:func:`_patch_starts` as tensor ops on a possibly symbolic ``size`` (no Python loop over the size)."""
    step = ps - 2
    num = (size - 2 + step - 1) // step  # len(range(0, size + step - ps, step)) for size >= ps
    return (torch.arange(num, device=device) * step).clamp(max=size - ps)


def _overlap_divisor_graph(size, ps: int, device=None) -> torch.Tensor:
    """:func:`_overlap_divisor` as tensor ops: 2 ** (number of overlap strips [top_k, i_k + 2) covering a position).

    Strip k (k >= 1) starts at the k-th patch start top_k = min(k * step, size - ps) and ends at k * step + 2.
    """
    step = ps - 2
    num = (size - 2 + step - 1) // step
    ends = torch.arange(1, num, device=device) * step + 2  # i_k + ps - step
    tops = (ends - 2).clamp(max=size - ps)
    pos = torch.arange(size, device=device)[:, None]
    strips = ((pos >= tops) & (pos < ends)).sum(dim=1)
    return torch.pow(2., strips.float())


class LRSA(nn.Module):
    """Attention inside overlapping ps x ps patches, pasted back with the official overlap averaging; conv FFN."""

    def __init__(self, dim: int, qk_dim: int, mlp_dim: int, heads: int = 1):
        super().__init__()
        self.layer = nn.ModuleList([
            PreNorm(dim, Attention(dim, heads, qk_dim)),
            PreNorm(dim, ConvFFN(dim, mlp_dim)),
        ])
        self._geom_cache: Dict[Tuple, Tuple[torch.Tensor, torch.Tensor, int]] = {}

    @staticmethod
    def _compute_geometry(H, W, ps: int, device=None) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """Flat pixel index of every patch position [P * ps * ps], the divisor map [H * W] and P (tensor ops only,
        so H / W may be symbolic sizes under export)."""
        tops, lefts = _patch_starts_graph(H, ps, device), _patch_starts_graph(W, ps, device)
        offsets = torch.arange(ps, device=device)
        rows = tops[:, None] + offsets  # [nh, ps]
        cols = lefts[:, None] + offsets  # [nw, ps]
        flat = rows[:, None, :, None] * W + cols[None, :, None, :]  # [nh, nw, ps, ps]
        div = _overlap_divisor_graph(H, ps, device)[:, None] * _overlap_divisor_graph(W, ps, device)[None, :]
        return flat.flatten(), div.flatten(), tops.shape[0] * lefts.shape[0]

    def _geometry(self, H: int, W: int, ps: int, device) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """The patch geometry: built in the graph under export/compile, cached per size in eager mode."""
        if in_graph_capture():
            # symbolic H / W: a cache keyed by the size would bake the export size in (or fail on unhashable SymInts)
            return self._compute_geometry(H, W, ps, device)
        key = (H, W, ps, str(device))
        if key not in self._geom_cache:
            if len(self._geom_cache) > 16:
                self._geom_cache.clear()
            self._geom_cache[key] = self._compute_geometry(H, W, ps, device)
        return self._geom_cache[key]

    def forward(self, x: torch.Tensor, ps: int) -> torch.Tensor:
        B, C, H, W = x.shape
        flat_idx, divisor, P = self._geometry(H, W, ps, x.device)
        attn, ff = self.layer
        # crop: [B, C, P*ps*ps] -> [B*P, ps*ps, C]
        crops = x.flatten(2)[:, :, flat_idx].reshape(B, C, P, ps * ps).permute(0, 2, 3, 1).reshape(B * P, ps * ps, C)
        crops = attn(crops) + crops
        # paste back: sum every patch into place, then the official overlap halving
        crops = crops.reshape(B, P * ps * ps, C).transpose(1, 2)
        # summed in at least fp32, as in _center_step
        acc = _accumulation_dtype(x.dtype)
        out = x.new_zeros(B, C, H * W, dtype=acc).scatter_add(2, flat_idx.expand(B, C, -1), crops.to(acc))
        out = (out / divisor.to(out.dtype)).to(x.dtype).transpose(1, 2)  # [B, N, C]
        out = ff(out, (H, W)) + out
        return out.transpose(1, 2).reshape(B, C, H, W)


# ----------------------------------------------------------------------------------------------
# model

class CATANet(nn.Module):
    """CATANet super-resolution network (official ``CATANet.setting``: dim 40, 8 blocks, qk 36, mlp 96, 4 heads)."""

    is_classifier = False

    def __init__(
            self,
            in_chans: int = 3,
            upscale: int = 4,
            dim: int = 40,
            qk_dim: int = 36,
            mlp_dim: int = 96,
            heads: int = 4,
            n_iters: Sequence[int] = (5,) * 8,
            num_tokens: Sequence[int] = (16, 32, 64, 128, 16, 32, 64, 128),
            group_size: Sequence[int] = (256, 128, 64, 32, 256, 128, 64, 32),
            patch_size: Sequence[int] = (16, 20, 24, 28, 16, 20, 24, 28),
            num_classes: int = 0,
            global_pool: Optional[str] = None,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ):
        super().__init__()
        if num_classes:
            raise ValueError(f'CATANet is a super-resolution model, not a classifier: num_classes must be 0, '
                             f'got {num_classes}')
        if drop_rate or drop_path_rate:
            raise ValueError('CATANet has no dropout / stochastic depth (drop_rate and drop_path_rate must be 0)')
        if upscale not in (1, 2, 3, 4):
            raise ValueError(f'CATANet supports upscale 1, 2, 3 or 4, got {upscale}')
        depth = len(patch_size)
        if not (len(n_iters) == len(num_tokens) == len(group_size) == depth):
            raise ValueError('n_iters, num_tokens, group_size and patch_size need one entry per block')
        self.in_chans = in_chans
        self.upscale = upscale
        self.num_classes = 0
        self.patch_size = tuple(patch_size)
        self.min_size = max(patch_size)
        self.num_features = self.head_hidden_size = dim
        self.grad_checkpointing = False
        self.split_batch = True  # eval on CPU: run a batch image by image (see _deep_per_image)

        self.first_conv = nn.Conv2d(in_chans, dim, 3, 1, 1)
        self.blocks = nn.ModuleList()
        self.mid_convs = nn.ModuleList()
        for i in range(depth):
            self.blocks.append(nn.ModuleList([
                TAB(dim, qk_dim, mlp_dim, heads, n_iters[i], num_tokens[i], group_size[i]),
                LRSA(dim, qk_dim, mlp_dim, heads),
            ]))
            self.mid_convs.append(nn.Conv2d(dim, dim, 3, 1, 1))
        self.feature_info = [dict(num_chs=dim, reduction=1, module=f'blocks.{i}') for i in range(depth)]

        if upscale == 4:
            self.upconv1 = nn.Conv2d(dim, dim * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(dim, dim * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        elif upscale in (2, 3):
            self.upconv = nn.Conv2d(dim, dim * upscale ** 2, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        self.last_conv = nn.Conv2d(dim, in_chans, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1)
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(stem=r'^first_conv', blocks=[(r'^blocks\.(\d+)', None), (r'^mid_convs\.(\d+)', None)])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return nn.Identity()

    def reset_classifier(self, num_classes: int = 0, global_pool: Optional[str] = None):
        if num_classes:
            raise ValueError('CATANet is a super-resolution model and has no classifier to reset')

    # -- input handling -------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor):
        check_image_input(x, self.in_chans, 'CATANet', 2, 'the reflection padding to whole patches needs 2 pixels',
                          weight=self.first_conv.weight)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right up to the largest patch size (the official code is silently wrong below it)."""
        H, W = x.shape[-2:]
        while H < self.min_size or W < self.min_size:
            # reflect padding must be smaller than the side: grow in steps for tiny inputs
            ph = min(self.min_size - H, H - 1) if H < self.min_size else 0
            pw = min(self.min_size - W, W - 1) if W < self.min_size else 0
            x = F.pad(x, (0, pw, 0, ph), mode='reflect')
            H, W = x.shape[-2:]
        return x

    # -- forward --------------------------------------------------------------------------------
    def _run_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        tab, lrsa = self.blocks[i]
        return x + self.mid_convs[i](lrsa(tab(x), self.patch_size[i]))

    def _deep(self, shallow: torch.Tensor, indices: Optional[List[int]] = None, stop: Optional[int] = None):
        if self.split_batch and shallow.shape[0] > 1 and self._images_independent(shallow):
            return self._deep_per_image(shallow, indices, stop)
        return self._deep_batch(shallow, indices, stop)

    @torch.jit.ignore
    def _images_independent(self, x: torch.Tensor) -> bool:
        """Eval with every TAB's centres loaded: each image's output depends on that image only (in training, and
        before the centres are initialised, the centres are computed from the whole batch)."""
        return (not self.training and x.device.type == 'cpu' and not in_graph_capture()
                and all(bool(tab.initted) for tab, _ in self.blocks))

    @torch.jit.ignore
    def _deep_per_image(self, shallow: torch.Tensor, indices: Optional[List[int]], stop: Optional[int]):
        """:meth:`_deep_batch` one image at a time (same values): on CPU every intermediate of a batch of 8
        (tens of MB per map at 128 px) then stays in cache, 1.4-2x faster (measured) and a fraction of the memory."""
        parts = [self._deep_batch(s, indices, stop) for s in shallow.split(1)]
        outs = [torch.cat([p[1][j] for p in parts]) for j in range(len(parts[0][1]))]
        return torch.cat([p[0] for p in parts]), outs

    def _deep_batch(self, shallow: torch.Tensor, indices: Optional[List[int]] = None, stop: Optional[int] = None):
        x = shallow
        outs = []
        n = len(self.blocks) if stop is None else stop + 1
        use_ckpt = self.grad_checkpointing and self.training and not torch.jit.is_scripting()
        for tab, _ in self.blocks:
            tab.flush_pending_update()  # the previous step's deferred EMA (backward is done by now)
            tab.defer_ema = use_ckpt
        for i in range(n):
            if use_ckpt:
                x = checkpoint(self._run_block, i, x)
            else:
                x = self._run_block(i, x)
            if indices is not None and i in indices:
                outs.append(x)
        return x, outs

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ):
        """Outputs of the TAB+LRSA blocks (NCHW, LR resolution); final = ``forward_features``."""
        if output_fmt != 'NCHW':
            raise ValueError(f'CATANet intermediates are NCHW only, got output_fmt={output_fmt!r}')
        self._check_input(x)
        H, W = x.shape[-2:]
        shallow = self.first_conv(self._pad(x))
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        stop = max_index if (stop_early and intermediates_only) else None
        deep, outs = self._deep(shallow, take_indices, stop)
        outs = [o[..., :H, :W] for o in outs]
        if intermediates_only:
            return outs
        return (deep + shallow)[..., :H, :W], outs

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        self.mid_convs = self.mid_convs[:max_index + 1]
        self.patch_size = self.patch_size[:max_index + 1]
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Deep features at LR resolution [B, dim, H, W] (shallow + deep, before the upsampler)."""
        self._check_input(x)
        H, W = x.shape[-2:]
        shallow = self.first_conv(self._pad(x))
        deep, _ = self._deep(shallow)
        return (deep + shallow)[..., :H, :W]

    def reconstruct(self, feats: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Upsampler: features (padded LR grid) + bilinear-upsampled LR image -> SR image."""
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv1(feats)))
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        elif self.upscale == 1:
            out = feats
        else:
            out = self.lrelu(self.pixel_shuffle(self.upconv(feats)))
        base = lr if self.upscale == 1 else F.interpolate(
            lr, scale_factor=self.upscale, mode='bilinear', align_corners=False)
        return self.last_conv(out) + base

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError('CATANet has no classification head; forward() returns the SR image')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        H, W = x.shape[-2:]
        xp = self._pad(x)
        shallow = self.first_conv(xp)
        deep, _ = self._deep(shallow)
        out = self.reconstruct(deep + shallow, xp)
        s = self.upscale
        return out[..., :H * s, :W * s]


# ----------------------------------------------------------------------------------------------
# weights

def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official (BasicSR) checkpoint -> zoo. The layout is the official one; unwraps BasicSR's ``params`` /
    ``params_ema`` (EMA preferred when present) and ``model`` / ``state_dict`` wrappers; idempotent."""
    for wrapper in ('params_ema', 'params', 'state_dict', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    out = {}
    for k, v in state_dict.items():
        if k.startswith('module.'):
            k = k[len('module.'):]
        out[k] = v
    return out


def _create_catanet(variant: str, pretrained: bool = False, **kwargs) -> CATANet:
    out_indices = kwargs.pop('out_indices', tuple(range(8)))
    return build_zoo_model(
        CATANet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(url: str = '', scale: int = 4, **kwargs) -> Dict:
    return {
        'url': url, 'num_classes': 0, 'input_size': (3, 64, 64), 'pool_size': None,
        'min_input_size': (3, 2, 2), 'crop_pct': 1.0, 'interpolation': 'bicubic',
        'mean': (0., 0., 0.), 'std': (1., 1., 1.),  # RGB in [0, 1], no normalisation
        'first_conv': 'first_conv', 'classifier': None,
        'description': f'x{scale} image super-resolution (output {scale}x the input size), RGB in [0, 1]',
        'paper_ids': 'arXiv:2503.06896',
        'paper_name': 'CATANet: Efficient Content-Aware Token Aggregation for Lightweight Image Super-Resolution',
        'origin_url': 'https://github.com/EquationWalker/CATANet', 'license': 'apache-2.0',
        'notes': ('Official weights: GitHub release v0.0 (BasicSR .pth, key "params"); the file names follow the '
                  'test YAMLs and were not downloaded here (no network in CI).'),
        **kwargs,
    }


_RELEASE = 'https://github.com/EquationWalker/CATANet/releases/download/v0.0/'

default_cfgs = zoo_default_cfgs({
    'catanet_x2.div2k': _cfg(url=_RELEASE + 'x2.pth', scale=2),
    'catanet_x3.div2k': _cfg(url=_RELEASE + 'x3.pth', scale=3),
    'catanet_x4.div2k': _cfg(url=_RELEASE + 'x4.pth', scale=4),
})


@register_zoo_model
def catanet_x2(pretrained: bool = False, **kwargs) -> CATANet:
    return _create_catanet('catanet_x2', pretrained, **dict(dict(upscale=2), **kwargs))


@register_zoo_model
def catanet_x3(pretrained: bool = False, **kwargs) -> CATANet:
    return _create_catanet('catanet_x3', pretrained, **dict(dict(upscale=3), **kwargs))


@register_zoo_model
def catanet_x4(pretrained: bool = False, **kwargs) -> CATANet:
    return _create_catanet('catanet_x4', pretrained, **dict(dict(upscale=4), **kwargs))
