""" MOAT: Alternating Mobile Convolution and Attention Brings Strong Vision Models

Paper: https://arxiv.org/abs/2210.01820 (ICLR 2023)
Official code (TensorFlow 2 / Keras): https://github.com/google-research/deeplab2
(model/pixel_encoder/moat.py, model/layers/moat_blocks.py, model/layers/moat_attention.py).

A PyTorch re-implementation that reproduces the TF model's numerics, so the released TF checkpoints convert
(`checkpoint_filter_fn`, `zoo convert moat ...`). Things that matter for exactness with the TF original:

* BatchNorm eps 1e-3 (Keras default), LayerNorm eps 1e-5, exact (erf) GELU, SE with swish.
* TF 'SAME' padding: stride-2 convs pad bottom/right first (timm's dynamic ``Conv2dSame``); the stride-2
  average-pool shortcut also pads 'SAME' and its mean excludes the padded cells (:class:`AvgPool2dSameExclusive`).
* MBConv expansion is relative to the block's *output* width; the SE bottleneck is a quarter of the output width.
* Relative-position bias: a [heads, 2P-1, 2P-1] table (P = 14 at stride 16, 7 at stride 32), resized bilinearly
  (half-pixel, ``align_corners=False``) to the attention window, indexed by key - query (Swin uses query - key).
* Softmax in fp32 (``zoo.ops.attention`` does that for every dtype).
* Head: global mean -> LayerNorm -> 1x1 conv (a Linear here).

Attention is global over the feature map by default (classification). For dense prediction pass ``window_size``
(e.g. ``[None, None, 14, 7]``): the map is zero-padded to a multiple of the window, padded keys are masked out, and the
output is cropped back (the official code has no padding and requires divisible maps; on divisible maps the two agree).
The official model builds the resized bias once for its build-time input size; here it is derived at every forward
from the current window size, which is what the official model computes when built for that size.
"""
import re
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    LayerNorm2d,
    NormMlpClassifierHead,
    SEModule,
    register_notrace_function,
    register_notrace_module,
)
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.attention import attention

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['Moat', 'checkpoint_filter_fn']


BN_EPS = 1e-3  # Keras BatchNormalization default (PyTorch's is 1e-5)
BN_MOMENTUM = 0.01  # Keras momentum 0.99 in PyTorch terms
LN_EPS = 1e-5
MIN_INPUT_SIZE = 1  # every stride-2 layer pads TF 'SAME' (ceil): any image keeps a 1x1 stride-32 map

WindowArg = Optional[Union[int, Sequence[Optional[Union[int, Sequence[int]]]]]]


# ------------------------------------------------------------------------------------------------------------------
# TF-compatible layers

def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TF 'SAME' padding (before, after) of one axis: the output has ceil(size / stride) positions and the odd
    cell goes after. Integer arithmetic only: on symbolic sizes timm's ``math.ceil`` form builds float
    expressions whose simplification made torch.export of a dynamic-size MOAT take over 13 minutes."""
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + (kernel_size - 1) * dilation + 1 - size
    if (kernel_size - 1) * dilation + 1 < stride:  # only then can the formula go negative
        total = torch.sym_max(total, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TF 'SAME' padding computed per input (what timm's ``create_conv2d(padding='same')`` builds
    for strided convs, with :func:`same_padding`'s integer arithmetic); parameters as ``nn.Conv2d``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = True):
        super().__init__(in_chs, out_chs, kernel_size, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        pads = (*same_padding(x.shape[-1], kw, sw, dw), *same_padding(x.shape[-2], kh, sh, dh))
        return self._conv_forward(F.pad(x, pads), self.weight, self.bias)


def conv_same(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1,
              bias: bool = True) -> nn.Conv2d:
    """TF 'SAME' convolution: static symmetric padding where it is input-independent (stride 1, odd kernel)."""
    if stride == 1 and kernel_size % 2 == 1:
        return nn.Conv2d(in_chs, out_chs, kernel_size, 1, kernel_size // 2, groups=groups, bias=bias)
    return Conv2dSame(in_chs, out_chs, kernel_size, stride, groups, bias)


@register_notrace_module
class AvgPool2dSameExclusive(nn.Module):
    """Average pooling with TF 'SAME' padding whose mean counts only the real (unpadded) cells, as TF does."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        pads = (*same_padding(W, self.kernel_size, self.stride), *same_padding(H, self.kernel_size, self.stride))
        if not _in_graph_capture() and not any(pads):  # under export: the general path, in the graph
            return F.avg_pool2d(x, self.kernel_size, self.stride)
        total = F.avg_pool2d(F.pad(x, pads), self.kernel_size, self.stride)
        # fraction of each window that lies inside the image: dividing by it turns the padded mean into the real one
        inside = F.avg_pool2d(F.pad(x.new_ones((1, 1, H, W)), pads), self.kernel_size, self.stride)
        return total / inside

    def extra_repr(self) -> str:
        return f'kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME, exclude_pad=True'


def _bn(num_features: int) -> nn.BatchNorm2d:
    # Keras momentum 0.99 (moving = 0.99 * moving + 0.01 * batch) is PyTorch momentum 0.01
    return nn.BatchNorm2d(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)


# ------------------------------------------------------------------------------------------------------------------
# attention (the mixer)

@register_notrace_function
def relative_position_bias(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[heads, 2P-1, 2Q-1] table -> [heads, h*w, h*w] bias for an h x w window (TF MOAT's `2d_multi_head`).

    The table is first resized to [2h-1, 2w-1] (bilinear, half-pixel centres = TF `tf.image.resize`), then
    bias[n, (i, j), (x, y)] = table[n, x - i + h - 1, y - j + w - 1]: the index is key minus query.
    """
    num_heads = table.shape[0]
    size = (2 * height - 1, 2 * width - 1)
    if _in_graph_capture() or tuple(table.shape[-2:]) != size:  # same size: an exact identity
        table = F.interpolate(table[None].float(), size=size, mode='bilinear', align_corners=False)[0].to(table.dtype)
    pos_h = torch.arange(height, device=table.device)
    pos_w = torch.arange(width, device=table.device)
    idx_h = pos_h[None, :] - pos_h[:, None] + height - 1  # [query i, key x]
    idx_w = pos_w[None, :] - pos_w[:, None] + width - 1  # [query j, key y]
    # one flat gather (3x faster on CPU than 2-D advanced indexing): index [i, j, x, y] into the [2h-1 * 2w-1] table
    flat_idx = (idx_h[:, None, :, None] * size[1] + idx_w[None, :, None, :]).reshape(-1)
    bias = table.reshape(num_heads, -1).index_select(1, flat_idx)
    return bias.view(num_heads, height * width, height * width)


@register_notrace_module  # shape-dependent bias / mask logic: an FX leaf
class MoatAttention(nn.Module):
    """Multi-head self-attention over windows with separate q/k/v/o projections and a 2-D relative-position bias.

    Input and output are windows [B', h, w, C]; ``key_mask`` ([windows, h*w], additive, 0 or -inf) hides padded
    keys, batch item b using ``key_mask[b % windows]``.
    """

    def __init__(self, dim: int, head_dim: int = 32, rel_pos_size: Optional[int] = None):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f'MoatAttention: dim {dim} is not a multiple of head_dim {head_dim}')
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        inner = self.num_heads * head_dim
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.o = nn.Linear(inner, dim)
        self.rel_pos_size = rel_pos_size
        if rel_pos_size:
            table_size = 2 * rel_pos_size - 1
            self.relative_position_embedding = nn.Parameter(torch.zeros(self.num_heads, table_size, table_size))
            nn.init.normal_(self.relative_position_embedding, std=0.02)
        else:
            self.register_parameter('relative_position_embedding', None)

    def _bias(self, height: int, width: int, key_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        bias = None
        if self.relative_position_embedding is not None:
            bias = relative_position_bias(self.relative_position_embedding, height, width)[None]  # [1, N, S, S]
        if key_mask is not None:
            mask = key_mask[:, None, None, :]  # [windows, 1, 1, S]
            bias = mask if bias is None else bias + mask
            if bias.shape[-2] == 1:
                bias = bias.expand(-1, -1, height * width, -1)
        return bias

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, h, w, C = x.shape
        x = x.reshape(B, h * w, C)
        q = self.q(x).view(B, h * w, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, h * w, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, h * w, self.num_heads, self.head_dim).transpose(1, 2)
        bias = self._bias(h, w, key_mask)
        if bias is not None:
            bias = bias.to(q.dtype)
        x = attention(q, k, v, bias=bias, scale=self.scale)  # softmax in fp32 inside
        x = x.transpose(1, 2).reshape(B, h * w, self.num_heads * self.head_dim)
        return self.o(x).view(B, h, w, C)


@register_notrace_function
def window_partition(x: torch.Tensor, window: Tuple[int, int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """NHWC map -> windows [B * nh * nw, wh, ww, C] (zero-padded bottom/right) and an additive key mask or None."""
    B, H, W, C = x.shape
    wh, ww = window
    # positive ceil arithmetic (not (-H) % wh): simple expressions for symbolic sizes, exact in ONNX
    pad_h, pad_w = (H + wh - 1) // wh * wh - H, (W + ww - 1) // ww * ww - W
    mask = None
    if _in_graph_capture() or pad_h or pad_w:  # under export the (possibly zero) padding and mask stay in the graph
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        valid = torch.zeros(H + pad_h, W + pad_w, dtype=torch.bool, device=x.device)
        valid[:H, :W] = True
        valid = valid.view((H + pad_h) // wh, wh, (W + pad_w) // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
        mask = torch.zeros(valid.shape, dtype=torch.float32, device=x.device).masked_fill(~valid, float('-inf'))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // wh, wh, Wp // ww, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh, ww, C)
    return x, mask


@register_notrace_function
def window_reverse(x: torch.Tensor, window: Tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: windows -> NHWC map [B, height, width, C] (padding cropped)."""
    wh, ww = window
    Hp, Wp = (height + wh - 1) // wh * wh, (width + ww - 1) // ww * ww
    C = x.shape[-1]
    x = x.view(-1, Hp // wh, Wp // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)
    return x[:, :height, :width].contiguous()


# ------------------------------------------------------------------------------------------------------------------
# blocks

class MbConvBlock(nn.Module):
    """Pre-norm inverted residual (CoAtNet / MOAT style), TF names kept for the layers.

    shortcut: avg-pool (stride > 1) -> 1x1 conv (width change); branch: BN -> 1x1 expand (4x the *output* width)
    -> BN -> GELU -> 3x3 depthwise (stride) -> BN -> GELU -> SE (optional) -> 1x1 shrink.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            expand_ratio: float = 4.,
            se_ratio: Optional[float] = 0.25,
            pool_size: int = 2,
            drop_path: float = 0.,
    ):
        super().__init__()
        mid_chs = int(out_chs * expand_ratio)
        self.shortcut_pool = AvgPool2dSameExclusive(pool_size, stride) if stride > 1 else nn.Identity()
        self.shortcut_conv = nn.Conv2d(in_chs, out_chs, 1) if in_chs != out_chs else nn.Identity()
        self.pre_norm = _bn(in_chs)
        self.expand_conv = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.expand_norm = _bn(mid_chs)
        self.act = nn.GELU()  # exact erf GELU, as tf.nn.gelu's default
        self.depthwise_conv = conv_same(mid_chs, mid_chs, 3, stride=stride, groups=mid_chs, bias=False)
        self.depthwise_norm = _bn(mid_chs)
        if se_ratio:
            # the SE bottleneck is sized from the block's output width, not from the expanded width
            self.se = SEModule(mid_chs, rd_channels=max(1, int(out_chs * se_ratio)), act_layer=nn.SiLU)
        else:
            self.se = nn.Identity()
        self.shrink_conv = nn.Conv2d(mid_chs, out_chs, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_conv(self.shortcut_pool(x))
        x = self.expand_conv(self.pre_norm(x))
        x = self.act(self.expand_norm(x))
        x = self.act(self.depthwise_norm(self.depthwise_conv(x)))
        x = self.shrink_conv(self.se(x))
        return shortcut + self.drop_path(x)


class MoatBlock(MbConvBlock):
    """MBConv without SE, then pre-LN (window) self-attention with a residual: the MOAT block."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            expand_ratio: float = 4.,
            pool_size: int = 2,
            head_dim: int = 32,
            rel_pos_size: Optional[int] = None,
            window_size: Optional[Tuple[int, int]] = None,
            drop_path: float = 0.,
    ):
        super().__init__(in_chs, out_chs, stride, expand_ratio, se_ratio=None, pool_size=pool_size,
                         drop_path=drop_path)
        self.window_size = window_size  # None: global attention over the whole map
        self.attention_norm = nn.LayerNorm(out_chs, eps=LN_EPS)
        self.attention = MoatAttention(out_chs, head_dim, rel_pos_size)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if self.window_size is None:
            return self.attention(x)
        windows, mask = window_partition(x, self.window_size)
        windows = self.attention(windows, mask)
        return window_reverse(windows, self.window_size, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        y = self._attend(self.attention_norm(x.permute(0, 2, 3, 1)))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class MoatStage(nn.Module):
    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            depth: int,
            block_type: str = 'mbconv',
            stride: int = 2,
            expand_ratio: float = 4.,
            se_ratio: Optional[float] = 0.25,
            pool_size: int = 2,
            head_dim: int = 32,
            rel_pos_size: Optional[int] = None,
            window_size: Optional[Tuple[int, int]] = None,
            global_attn_at_end: bool = False,
            drop_path: Sequence[float] = (),
    ):
        super().__init__()
        self.grad_checkpointing = False
        blocks = []
        for i in range(depth):
            common = dict(stride=stride if i == 0 else 1, expand_ratio=expand_ratio, pool_size=pool_size,
                          drop_path=drop_path[i] if drop_path else 0.)
            block_in = in_chs if i == 0 else out_chs
            if block_type == 'mbconv':
                blocks.append(MbConvBlock(block_in, out_chs, se_ratio=se_ratio, **common))
            elif block_type == 'moat':
                window = None if (global_attn_at_end and i == depth - 1) else window_size
                blocks.append(MoatBlock(block_in, out_chs, head_dim=head_dim, rel_pos_size=rel_pos_size,
                                        window_size=window, **common))
            else:
                raise ValueError(f"MOAT block type must be 'mbconv' or 'moat', got {block_type!r}")
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class MoatStem(nn.Module):
    """3x3 conv stride 2 ('SAME') -> BN -> GELU -> 3x3 conv; no norm or activation after the second conv."""

    def __init__(self, in_chs: int, out_chs: Sequence[int]):
        super().__init__()
        self.conv1 = conv_same(in_chs, out_chs[0], 3, stride=2)
        self.norm1 = _bn(out_chs[0])
        self.act1 = nn.GELU()
        self.conv2 = conv_same(out_chs[0], out_chs[1], 3, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act1(self.norm1(self.conv1(x))))


def _window_per_stage(window_size: WindowArg, num_stages: int) -> List[Optional[Tuple[int, int]]]:
    """None | int | (h, w) for every attention stage | a per-stage list of None / int / (h, w)."""
    def one(w) -> Optional[Tuple[int, int]]:
        if w is None:
            return None
        if isinstance(w, int):
            w = (w, w)
        if not (isinstance(w, (tuple, list)) and len(w) == 2 and all(isinstance(v, int) and v > 0 for v in w)):
            raise ValueError(f'MOAT window size must be None, a positive int or (height, width), got {w!r}')
        return tuple(w)

    if window_size is None or isinstance(window_size, int):
        return [one(window_size)] * num_stages
    window_size = list(window_size)
    shared = len(window_size) == 2 and all(isinstance(v, int) for v in window_size)
    if shared:
        return [one(window_size)] * num_stages
    if len(window_size) == num_stages:
        return [one(w) for w in window_size]
    raise ValueError(f'MOAT window_size {window_size!r}: give None, an int, (height, width) or one entry per stage '
                     f'({num_stages} stages)')


# ------------------------------------------------------------------------------------------------------------------
# model

@register_notrace_function  # shape checks are control flow: keep them out of FX graphs (they run as a call node)
def check_input(x: torch.Tensor, in_chans: int, weight: Optional[torch.Tensor] = None):
    check_image_input(x, in_chans, 'MOAT', MIN_INPUT_SIZE, weight=weight)


def _init_weights(module: nn.Module):
    # the official initialisers: every conv / dense kernel ~ N(0, 0.02), biases zero (rel-pos tables: N(0, 0.02) too)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Moat(nn.Module):
    """MOAT backbone + classifier (global mean -> LayerNorm -> linear)."""

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            stem_chs: Sequence[int] = (64, 64),
            depths: Sequence[int] = (2, 3, 7, 2),
            dims: Sequence[int] = (96, 192, 384, 768),
            block_types: Sequence[str] = ('mbconv', 'mbconv', 'moat', 'moat'),
            expand_ratio: float = 4.,
            se_ratio: float = 0.25,
            head_dim: int = 32,
            pool_size: int = 2,
            rel_pos: bool = True,
            rel_pos_sizes: Sequence[Optional[int]] = (None, None, 14, 7),
            window_size: WindowArg = None,
            global_attn_at_stage_end: bool = False,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            img_size: Optional[Union[int, Tuple[int, int]]] = None,  # accepted for timm; the model is size-agnostic
    ):
        super().__init__()
        num_stages = len(depths)
        if not (len(dims) == len(block_types) == len(rel_pos_sizes) == num_stages):
            raise ValueError('MOAT: depths, dims, block_types and rel_pos_sizes need one entry per stage')
        if len(stem_chs) != 2:
            raise ValueError(f'MOAT: stem_chs must have two widths, got {stem_chs!r}')
        if pool_size not in (2, 3):
            raise ValueError(f'MOAT: pool_size must be 2 (classification) or 3 (dense prediction), got {pool_size}')
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        windows = _window_per_stage(window_size, num_stages)

        self.stem = MoatStem(in_chans, stem_chs)
        # stochastic depth as in the official code: rate * block_id / total_blocks (the last block stays below rate)
        total = sum(depths)
        dpr = [drop_path_rate * i / total for i in range(total)]
        stages, in_chs, reduction = [], stem_chs[-1], 2
        self.feature_info = []
        for i in range(num_stages):
            reduction *= 2
            stages.append(MoatStage(
                in_chs, dims[i], depths[i], block_types[i], stride=2, expand_ratio=expand_ratio, se_ratio=se_ratio,
                pool_size=pool_size, head_dim=head_dim, rel_pos_size=rel_pos_sizes[i] if rel_pos else None,
                window_size=windows[i], global_attn_at_end=global_attn_at_stage_end,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
            ))
            in_chs = dims[i]
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = in_chs
        self.head = NormMlpClassifierHead(
            in_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=LN_EPS))
        self.apply(_init_weights)

    # -- timm contract ------------------------------------------------------------------------------------------

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {n for n, _ in self.named_parameters() if n.endswith('relative_position_embedding')}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else [
            (r'^stages\.(\d+)\.blocks\.(\d+)', None), (r'^head\.norm', (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, reset_other: bool = False):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head.reset(num_classes, global_pool, reset_other=reset_other)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (strides 4, 8, 16, 32). ``norm`` has no effect: MOAT's only norm sits in the head."""
        if output_fmt != 'NCHW':
            raise ValueError(f"MOAT intermediates are NCHW only, got output_fmt={output_fmt!r}")
        check_input(x, self.in_chans, self.stem.conv1.weight)
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end or prune_norm:
            # the head's LayerNorm is sized for the last stage, so it goes with the head
            self.reset_classifier(0, '', reset_other=True)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, self.stem.conv1.weight)
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------------------------
# TF checkpoint conversion

_EMA_SUFFIX = '/ExponentialMovingAverage'
_BN_NAMES = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean', 'moving_variance': 'running_var'}
_LAYER_RENAMES = {'se/reduce_conv2d': 'se.fc1', 'se/expand_conv2d': 'se.fc2'}
_STEM_RENAMES = {'conv_0': 'stem.conv1', 'norm_0': 'stem.norm1', 'conv_1': 'stem.conv2'}
_HEAD_RENAMES = {'final_layer_norm': 'head.norm', 'logits_head': 'head.fc'}
_BLOCK_RE = re.compile(r'^moat/block_(\d+)_(\d+)/(.+)$')


def tf_to_zoo_name(tf_name: str) -> Optional[str]:
    """TF checkpoint variable name (``moat/block_02_00/attention/q/weight``) -> zoo state_dict key, or None.

    EMA copies (``.../ExponentialMovingAverage``) map like their variable; names that are not model variables
    (optimizer slots, global_step, ...) give None.
    """
    name = tf_name[:-2] if tf_name.endswith(':0') else tf_name
    name = name[:-len(_EMA_SUFFIX)] if name.endswith(_EMA_SUFFIX) else name
    if name.startswith('moat/stem/'):
        name = name[len('moat/stem/'):]
    layer, _, var = name.rpartition('/')
    if layer in _STEM_RENAMES:  # the TF2 model names the stem without scope; TF1 checkpoints add moat/stem/
        prefix = _STEM_RENAMES[layer]
    elif layer.startswith('moat/') and layer[5:] in _HEAD_RENAMES:
        prefix = _HEAD_RENAMES[layer[5:]]
    else:
        m = _BLOCK_RE.match(name)
        if not m:
            return None
        stage, block, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        layer, _, var = rest.rpartition('/')
        layer = _LAYER_RENAMES.get(layer, layer).replace('/', '.')
        prefix = f'stages.{stage}.blocks.{block}.{layer}'
    if var == 'relative_position_embedding':
        return prefix + '.' + var
    if var in _BN_NAMES:  # BatchNorm, or LayerNorm (gamma / beta only)
        return prefix + '.' + _BN_NAMES[var]
    if var in ('kernel', 'depthwise_kernel', 'weight'):
        return prefix + '.weight'
    if var == 'bias':
        return prefix + '.bias'
    return None


def _tf_to_torch_layout(tf_name: str, key: str, value: torch.Tensor) -> torch.Tensor:
    var = tf_name.replace(_EMA_SUFFIX, '').rpartition('/')[2]
    if var == 'kernel':
        if key == 'head.fc.weight':  # 1x1 conv head -> Linear
            return value.reshape(value.shape[-2], value.shape[-1]).t()
        return value.permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
    if var == 'depthwise_kernel':
        return value.permute(2, 3, 0, 1)  # [kh, kw, C, 1] -> [C, 1, kh, kw]
    if '.attention.' in key and var in ('weight', 'bias'):
        layer = key.rsplit('.', 2)[-2]
        if layer in ('q', 'k', 'v'):
            # [C, heads, head_dim] -> Linear [heads * head_dim, C]; bias [heads, head_dim] -> [heads * head_dim]
            return value.reshape(value.shape[0], -1).t() if var == 'weight' else value.reshape(-1)
        if layer == 'o' and var == 'weight':
            return value.reshape(-1, value.shape[-1]).t()  # [heads, head_dim, C] -> Linear [C, heads * head_dim]
    return value


def _is_tf_checkpoint(state_dict: Dict) -> bool:
    return any(k.startswith('moat/') or k.rpartition('/')[0] in _STEM_RENAMES for k in state_dict)


def convert_tf_checkpoint(tf_vars: Dict[str, torch.Tensor], use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """TF variable name -> array dict (as read from a MOAT TF checkpoint) -> zoo state_dict.

    With ``use_ema`` (default) a variable's ``/ExponentialMovingAverage`` copy is taken where the checkpoint has one:
    Google's TF/TPU classification recipes evaluate (and report top-1 of) the EMA weights, while the raw variables are
    the last optimiser step. ``use_ema=False`` takes the raw variables (what the official downstream loader assigns).
    Variables with no zoo counterpart (optimizer slots, step counters) are dropped.
    """
    chosen: Dict[str, Tuple[str, torch.Tensor]] = {}
    for tf_name, value in tf_vars.items():
        key = tf_to_zoo_name(tf_name)
        if key is None:
            continue
        value = torch.as_tensor(value)
        is_ema = tf_name.endswith(_EMA_SUFFIX) or tf_name.endswith(_EMA_SUFFIX + ':0')
        if key in chosen:
            prev_is_ema = _EMA_SUFFIX in chosen[key][0]
            if prev_is_ema == is_ema:
                raise ValueError(f'MOAT checkpoint: {tf_name!r} and {chosen[key][0]!r} map to the same key {key!r}')
            if is_ema != use_ema:
                continue
        elif is_ema and not use_ema and tf_name.replace(_EMA_SUFFIX, '') in tf_vars:
            continue
        chosen[key] = (tf_name, _tf_to_torch_layout(tf_name, key, value))
    out = {k: v.float() if v.is_floating_point() else v for k, (_, v) in chosen.items()}
    # TF BatchNorm has no step counter; add torch's so a strict load_state_dict sees every buffer
    for key in list(out):
        if key.endswith('.running_mean'):
            out.setdefault(key[:-len('running_mean')] + 'num_batches_tracked', torch.tensor(0, dtype=torch.long))
    return out


def checkpoint_filter_fn(state_dict: Dict, model: Optional[nn.Module] = None, use_ema: bool = True) -> Dict:
    """Official TF MOAT variables (name -> array) or an already converted zoo state dict -> zoo state dict."""
    for wrapper in ('model', 'state_dict'):
        if isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not _is_tf_checkpoint(state_dict):
        return dict(state_dict)  # already in zoo layout: idempotent
    return convert_tf_checkpoint(state_dict, use_ema=use_ema)


# ------------------------------------------------------------------------------------------------------------------
# builders, cfgs, entrypoints

def _create_moat(variant: str, pretrained: bool = False, **kwargs) -> Moat:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_zoo_model(
        Moat, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


_TF_CKPT = 'https://storage.googleapis.com/gresearch/tf-deeplab/checkpoint/{}_{}_position_embedding.tar.gz'
_NOTE = ('Official weights are a TF1 checkpoint (tar.gz at origin_url): convert them with '
         '`zoo convert moat --variant {variant} --src <extracted checkpoint> --out {variant}.safetensors`, then load '
         'with pretrained=True, pretrained_cfg_overlay=dict(file=...).')


def _cfg(ckpt: str = '', variant: str = '', pe: bool = True, **kwargs):
    return {
        'url': '',
        'origin_url': _TF_CKPT.format(ckpt, 'w' if pe else 'wo') if ckpt else '',
        'notes': (_NOTE.format(variant=variant),) if ckpt else (),
        'paper_ids': 'arXiv:2210.01820',
        'license': 'apache-2.0',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 1.0, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1', 'classifier': 'head.fc',
        **kwargs,
    }


def _variant_cfgs():
    half = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # the g3doc's "option 2" normalisation: (x - 127.5) / 127.5
    specs = [
        ('moat_0', 'in1k', 'moat0_imagenet_1k_224', dict()),
        ('moat_1', 'in1k', 'moat1_imagenet_1k_224', dict()),
        ('moat_2', 'in22k_ft_in1k_384', 'moat2_imagenet_22k_and_1k_384',
         dict(input_size=(3, 384, 384), pool_size=(12, 12), **half)),
        ('moat_3', 'in22k_ft_in1k_512', 'moat3_imagenet_22k_and_1k_512',
         dict(input_size=(3, 512, 512), pool_size=(16, 16), **half)),
        ('moat_4', 'in22k_ft_in1k_512', 'moat4_imagenet_22k_and_1k_512',
         dict(input_size=(3, 512, 512), pool_size=(16, 16), **half)),
    ] + [
        (f'tiny_moat_{i}', 'in1k_256', f'tiny_moat{i}_imagenet_1k_256',
         dict(input_size=(3, 256, 256), pool_size=(8, 8)))
        for i in range(4)
    ]
    cfgs = {}
    for name, tag, ckpt, extra in specs:
        cfgs[f'{name}.{tag}'] = _cfg(ckpt, name, pe=True, **extra)
        cfgs[f'{name}_no_pe.{tag}'] = _cfg(ckpt, name + '_no_pe', pe=False, **extra)
    return cfgs


default_cfgs = zoo_default_cfgs(_variant_cfgs())

_MOAT_ARGS = {
    'moat_0': dict(stem_chs=(64, 64), depths=(2, 3, 7, 2), dims=(96, 192, 384, 768)),
    'moat_1': dict(stem_chs=(64, 64), depths=(2, 6, 14, 2), dims=(96, 192, 384, 768)),
    'moat_2': dict(stem_chs=(128, 128), depths=(2, 6, 14, 2), dims=(128, 256, 512, 1024)),
    'moat_3': dict(stem_chs=(160, 160), depths=(2, 12, 28, 2), dims=(160, 320, 640, 1280)),
    'moat_4': dict(stem_chs=(256, 256), depths=(2, 12, 28, 2), dims=(256, 512, 1024, 2048)),
    'tiny_moat_0': dict(stem_chs=(32, 32), depths=(2, 3, 7, 2), dims=(32, 64, 128, 256)),
    'tiny_moat_1': dict(stem_chs=(40, 40), depths=(2, 3, 7, 2), dims=(40, 80, 160, 320)),
    'tiny_moat_2': dict(stem_chs=(56, 56), depths=(2, 3, 7, 2), dims=(56, 112, 224, 448)),
    'tiny_moat_3': dict(stem_chs=(80, 80), depths=(2, 3, 7, 2), dims=(80, 160, 320, 640)),
}


def _make(name: str, pretrained: bool, rel_pos: bool, kwargs) -> Moat:
    base = name[:-len('_no_pe')] if name.endswith('_no_pe') else name
    return _create_moat(name, pretrained, **dict(_MOAT_ARGS[base], rel_pos=rel_pos, **kwargs))


@register_zoo_model
def moat_0(pretrained=False, **kwargs) -> Moat:
    """MOAT-0 (27.8M, 83.3% IN-1k top-1 at 224)."""
    return _make('moat_0', pretrained, True, kwargs)


@register_zoo_model
def moat_0_no_pe(pretrained=False, **kwargs) -> Moat:
    """MOAT-0 without relative position embedding (83.0% at 224)."""
    return _make('moat_0_no_pe', pretrained, False, kwargs)


@register_zoo_model
def moat_1(pretrained=False, **kwargs) -> Moat:
    """MOAT-1 (41.6M, 84.2% IN-1k top-1 at 224)."""
    return _make('moat_1', pretrained, True, kwargs)


@register_zoo_model
def moat_1_no_pe(pretrained=False, **kwargs) -> Moat:
    """MOAT-1 without relative position embedding (84.1% at 224)."""
    return _make('moat_1_no_pe', pretrained, False, kwargs)


@register_zoo_model
def moat_2(pretrained=False, **kwargs) -> Moat:
    """MOAT-2 (73.4M, 87.5% IN-22k -> IN-1k top-1 at 384)."""
    return _make('moat_2', pretrained, True, kwargs)


@register_zoo_model
def moat_2_no_pe(pretrained=False, **kwargs) -> Moat:
    """MOAT-2 without relative position embedding (87.2% at 384)."""
    return _make('moat_2_no_pe', pretrained, False, kwargs)


@register_zoo_model
def moat_3(pretrained=False, **kwargs) -> Moat:
    """MOAT-3 (190.0M, 88.4% IN-22k -> IN-1k top-1 at 512)."""
    return _make('moat_3', pretrained, True, kwargs)


@register_zoo_model
def moat_3_no_pe(pretrained=False, **kwargs) -> Moat:
    """MOAT-3 without relative position embedding (88.2% at 512)."""
    return _make('moat_3_no_pe', pretrained, False, kwargs)


@register_zoo_model
def moat_4(pretrained=False, **kwargs) -> Moat:
    """MOAT-4 (483.2M, 89.1% IN-22k -> IN-1k top-1 at 512)."""
    return _make('moat_4', pretrained, True, kwargs)


@register_zoo_model
def moat_4_no_pe(pretrained=False, **kwargs) -> Moat:
    """MOAT-4 without relative position embedding (88.9% at 512)."""
    return _make('moat_4_no_pe', pretrained, False, kwargs)


@register_zoo_model
def tiny_moat_0(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-0 (3.4M, 76.6% IN-1k top-1 at 256)."""
    return _make('tiny_moat_0', pretrained, True, kwargs)


@register_zoo_model
def tiny_moat_0_no_pe(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-0 without relative position embedding (76.0% at 256)."""
    return _make('tiny_moat_0_no_pe', pretrained, False, kwargs)


@register_zoo_model
def tiny_moat_1(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-1 (5.1M, 79.2% IN-1k top-1 at 256)."""
    return _make('tiny_moat_1', pretrained, True, kwargs)


@register_zoo_model
def tiny_moat_1_no_pe(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-1 without relative position embedding (78.9% at 256)."""
    return _make('tiny_moat_1_no_pe', pretrained, False, kwargs)


@register_zoo_model
def tiny_moat_2(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-2 (9.8M, 81.7% IN-1k top-1 at 256)."""
    return _make('tiny_moat_2', pretrained, True, kwargs)


@register_zoo_model
def tiny_moat_2_no_pe(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-2 without relative position embedding (81.3% at 256)."""
    return _make('tiny_moat_2_no_pe', pretrained, False, kwargs)


@register_zoo_model
def tiny_moat_3(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-3 (19.5M, 83.3% IN-1k top-1 at 256)."""
    return _make('tiny_moat_3', pretrained, True, kwargs)


@register_zoo_model
def tiny_moat_3_no_pe(pretrained=False, **kwargs) -> Moat:
    """tiny-MOAT-3 without relative position embedding (83.0% at 256)."""
    return _make('tiny_moat_3_no_pe', pretrained, False, kwargs)
