"""EfficientViT (MSRA): Memory Efficient Vision Transformer with Cascaded Group Attention.

Paper: https://arxiv.org/abs/2305.07027 (CVPR 2023)
Official code: https://github.com/microsoft/Cream/tree/main/EfficientViT

The zoo's implementation keeps timm's state-dict layout (timm's ``efficientvit_m*`` weights load
unchanged) and converts the official Cream checkpoints in ``checkpoint_filter_fn``. What is
different from timm:

* any input size >= 16 px: windows are padded (as timm does) and, instead of the fixed-size
  cfg, the window size is set at build time from ``img_size`` exactly as timm / Cream do;
* inference folds every BatchNorm into its convolution / linear layer on the fly (cached and
  invalidated when a weight or statistic changes), and folds the attention scale into the query
  convolution, which removes about half of the small ops that dominate this model on CPU;
* attention runs on ``zoo.ops.attention`` (Triton on GPU).

Named ``zoo_efficientvit_m0`` ... ``zoo_efficientvit_m5`` (timm owns the plain names).
"""
import re
from collections import OrderedDict
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    SelectAdaptivePool2d,
    SqueezeExcite,
    resize_rel_pos_bias_table_levit,
    to_2tuple,
    trunc_normal_,
)
from timm.models import checkpoint, checkpoint_seq
from timm.models._features import feature_take_indices
from zoo.ops import attention
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs
from ._folding import FoldedBN

__all__ = ['EfficientVit']

MIN_INPUT_SIZE = 1  # every stride-2 conv is 3x3 with padding 1 (rounds up): any image keeps a 1x1 last map


class ConvNorm(FoldedBN):
    """Conv2d (no bias) + BatchNorm2d; keys ``conv.weight`` and ``bn.*`` as in timm."""

    def __init__(self, in_chs, out_chs, kernel_size=1, stride=1, padding=0, groups=1, bn_weight_init=1.):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def _fold_sources(self):
        bn = self.bn
        return self.conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var

    def _compute_fold(self, src, scale):
        weight, gamma, beta, mean, var = src
        mult = gamma * torch.rsqrt(var + self.bn.eps)
        w = weight * (mult * scale).view(-1, 1, 1, 1)
        b = (beta - mean * mult) * scale
        return w, b

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if self.training:
            y = self.bn(self.conv(x))
            return y * scale if scale != 1.0 else y
        w, b = self._folded(scale)
        c = self.conv
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)


class NormLinear(FoldedBN):
    """BatchNorm1d -> Dropout -> Linear (keys ``bn.*``, ``linear.*`` as in timm); BN folded in eval."""

    def __init__(self, in_features: int, out_features: int, drop: float = 0.):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(drop)
        self.linear = nn.Linear(in_features, out_features)
        trunc_normal_(self.linear.weight, std=.02)
        nn.init.zeros_(self.linear.bias)

    def _fold_sources(self):
        bn = self.bn
        return self.linear.weight, self.linear.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var

    def _compute_fold(self, src, scale):
        weight, bias, gamma, beta, mean, var = src
        mult = gamma * torch.rsqrt(var + self.bn.eps)
        # linear(bn(x)) = x @ (W * mult)^T + (W @ (beta - mean * mult) + b)
        return weight * mult[None, :], weight @ (beta - mean * mult) + bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.linear(self.drop(self.bn(x)))
        return F.linear(x, *self._folded())


class Residual(nn.Module):
    """x + drop_path(m(x)); the wrapped module is ``m`` (timm's key layout)."""

    def __init__(self, m: nn.Module, drop_path: float = 0.):
        super().__init__()
        self.m = m
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x):
        y = self.m(x)
        return x + (self.drop_path(y) if self.drop_path is not None else y)


class ConvMlp(nn.Module):
    """1x1 ConvNorm (x2) -> ReLU -> 1x1 ConvNorm (BN weight zero-init, as the official code)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.pw1 = ConvNorm(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = ConvNorm(hidden, dim, bn_weight_init=0.)

    def forward(self, x):
        return self.pw2(self.act(self.pw1(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        hidden = dim * 4
        self.conv1 = ConvNorm(dim, hidden)
        self.act = nn.ReLU()
        self.conv2 = ConvNorm(hidden, hidden, 3, 2, 1, groups=hidden)
        self.se = SqueezeExcite(hidden, .25)
        self.conv3 = ConvNorm(hidden, out_dim)

    def forward(self, x):
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))


def _levit_bias_index(resolution: int) -> torch.Tensor:
    """[r*r, r*r] index into the per-offset bias table: offset (|dy|, |dx|) -> |dy| * r + |dx|.

    This equals LeViT's first-appearance enumeration used by Cream and timm (pairing query (0, 0)
    with every key in row-major order enumerates the offsets in exactly this order).
    """
    ys, xs = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * resolution + (xs[:, None] - xs[None, :]).abs()


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention on one window of ``resolution`` x ``resolution`` tokens.

    Head i sees its channel chunk plus head i-1's output (the cascade), projects it to q/k/v,
    refines q with a depthwise conv, and attends with a learned per-offset bias. The heads are
    sequential by construction; each head's attention is one ``zoo.ops.attention`` call.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int,
                 kernels: Sequence[int]):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.resolution = resolution
        self.qkvs = nn.ModuleList([
            ConvNorm(dim // num_heads, 2 * key_dim + self.val_dim) for _ in range(num_heads)])
        self.dws = nn.ModuleList([
            ConvNorm(key_dim, key_dim, kernels[i], 1, kernels[i] // 2, groups=key_dim) for i in range(num_heads)])
        self.proj = nn.Sequential(nn.ReLU(), ConvNorm(self.val_dim * num_heads, dim, bn_weight_init=0.))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer('attention_bias_idxs', _levit_bias_index(resolution), persistent=False)

    def attention_bias(self) -> torch.Tensor:
        """[heads, r*r, r*r] bias, gathered from the per-offset table (cached outside autograd)."""
        table, idxs = self.attention_biases, self.attention_bias_idxs
        if torch.is_grad_enabled() and table.requires_grad or _in_graph_capture():
            return table[:, idxs]
        key = (table.data_ptr(), table._version, idxs.data_ptr())
        if getattr(self, '_bias_key', None) != key:
            self._bias_key, self._bias_cache = key, table[:, idxs]
        return self._bias_cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        kd, vd = self.key_dim, self.val_dim
        bias = self.attention_bias()
        chunks = x.chunk(self.num_heads, dim=1)
        outs = []
        feat = chunks[0]
        for i, (qkv, dw) in enumerate(zip(self.qkvs, self.dws)):
            if i > 0:
                feat = outs[-1] + chunks[i]
            q, k, v = qkv(feat).split([kd, kd, vd], dim=1)
            # the attention scale is folded into the query conv's (BN-folded) weights
            q = dw(q, scale=self.scale)
            out = attention(
                q.flatten(2).transpose(1, 2)[:, None],   # [B, 1, N, kd]
                k.flatten(2).transpose(1, 2)[:, None],
                v.flatten(2).transpose(1, 2)[:, None],   # [B, 1, N, vd]
                bias[i:i + 1], scale=1.0)
            outs.append(out[:, 0].transpose(1, 2).reshape(B, vd, H, W))
        return self.proj(torch.cat(outs, dim=1))


class LocalWindowAttention(nn.Module):
    """Cascaded group attention in non-overlapping windows; maps are zero-padded to whole windows."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int,
                 window_resolution: int, kernels: Sequence[int]):
        super().__init__()
        self.window_resolution = window_resolution
        self.attn = CascadedGroupAttention(
            dim, key_dim, num_heads, attn_ratio, min(window_resolution, resolution), kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = self.attn.resolution
        if H == ws and W == ws and not _in_graph_capture():
            # one window exactly: skip the partition (eager only; an exported graph must not bake this
            # size-dependent branch in, so it always takes the general path, which gives the same result)
            return self.attn(x)
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        nh, nw = (H + pad_b) // ws, (W + pad_r) // ws
        # partition through the NHWC view: the windows come out channels-last (the layout this model
        # runs in on CPU, see EfficientVit.forward_features), with one copy in and one copy out
        x = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_r, 0, pad_b))  # unconditional: no size-dependent branch
        x = x.reshape(B, nh, ws, nw, ws, C).transpose(2, 3).reshape(B * nh * nw, ws, ws, C).permute(0, 3, 1, 2)
        x = self.attn(x)
        x = x.permute(0, 2, 3, 1).reshape(B, nh, nw, ws, ws, C).transpose(2, 3).reshape(B, nh * ws, nw * ws, C)
        return x[:, :H, :W].permute(0, 3, 1, 2)


class EfficientVitBlock(nn.Module):
    """The "sandwich": DW conv, FFN, window attention, DW conv, FFN, each residual."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int,
                 window_resolution: int, kernels: Sequence[int], drop_path: float = 0.):
        super().__init__()
        res = partial(Residual, drop_path=drop_path)
        self.dw0 = res(ConvNorm(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.))
        self.ffn0 = res(ConvMlp(dim, dim * 2))
        self.mixer = res(LocalWindowAttention(
            dim, key_dim, num_heads, attn_ratio, resolution, window_resolution, kernels))
        self.dw1 = res(ConvNorm(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.))
        self.ffn1 = res(ConvMlp(dim, dim * 2))

    def forward(self, x):
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


class EfficientVitStage(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, key_dim: int, downsample: bool, num_heads: int,
                 attn_ratio: float, resolution: int, window_resolution: int, kernels: Sequence[int], depth: int,
                 drop_path: Sequence[float] = ()):
        super().__init__()
        if downsample:
            self.resolution = (resolution - 1) // 2 + 1
            self.downsample = nn.Sequential(OrderedDict([
                ('res1', nn.Sequential(
                    Residual(ConvNorm(in_dim, in_dim, 3, 1, 1, groups=in_dim)), Residual(ConvMlp(in_dim, in_dim * 2)))),
                ('patchmerge', PatchMerging(in_dim, out_dim)),
                ('res2', nn.Sequential(
                    Residual(ConvNorm(out_dim, out_dim, 3, 1, 1, groups=out_dim)),
                    Residual(ConvMlp(out_dim, out_dim * 2)))),
            ]))
        else:
            if in_dim != out_dim:
                raise ValueError(f'a stage without downsampling keeps its width ({in_dim} != {out_dim})')
            self.resolution = resolution
            self.downsample = nn.Identity()
        dpr = list(drop_path) or [0.] * depth
        self.blocks = nn.Sequential(*[
            EfficientVitBlock(out_dim, key_dim, num_heads, attn_ratio, self.resolution, window_resolution, kernels,
                              dpr[d])
            for d in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class PatchEmbedding(nn.Sequential):
    """Four stride-2 3x3 ConvNorms (C/8 -> C/4 -> C/2 -> C) with ReLU between them: stride 16."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        widths = [in_chans, dim // 8, dim // 4, dim // 2, dim]
        for i in range(4):
            self.add_module(f'conv{i + 1}', ConvNorm(widths[i], widths[i + 1], 3, 2, 1))
            if i < 3:
                self.add_module(f'relu{i + 1}', nn.ReLU())


class EfficientVit(nn.Module):
    """EfficientViT (MSRA) classifier / backbone with the full timm model contract."""

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            embed_dim: Sequence[int] = (64, 128, 192),
            key_dim: Sequence[int] = (16, 16, 16),
            depth: Sequence[int] = (1, 2, 3),
            num_heads: Sequence[int] = (4, 4, 4),
            window_size: Sequence[int] = (7, 7, 7),
            kernels: Sequence[int] = (5, 5, 5, 5),
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ):
        super().__init__()
        if in_chans < 1 or num_classes < 0:
            raise ValueError(f'in_chans must be >= 1 and num_classes >= 0 (got {in_chans}, {num_classes})')
        if any(k % 2 == 0 for k in kernels) or len(kernels) < max(num_heads):
            raise ValueError(f'kernels {tuple(kernels)} must be odd, one per head (max heads {max(num_heads)})')
        self.grad_checkpointing = False
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.patch_embed = PatchEmbedding(in_chans, embed_dim[0])
        # as in Cream and timm, the build size (its smaller side) sets each stage's window resolution
        resolution = min(to_2tuple(img_size)) // 16
        dpr = [x.tolist() for x in torch.linspace(0, drop_path_rate, sum(depth), device='cpu').split(list(depth))]
        stride = 16
        self.feature_info = []
        stages = []
        for i in range(len(embed_dim)):
            stage = EfficientVitStage(
                in_dim=embed_dim[max(i - 1, 0)], out_dim=embed_dim[i], key_dim=key_dim[i], downsample=i > 0,
                num_heads=num_heads[i], attn_ratio=embed_dim[i] / (key_dim[i] * num_heads[i]),
                resolution=resolution, window_resolution=window_size[i], kernels=kernels, depth=depth[i],
                drop_path=dpr[i])
            stride *= 2 if i > 0 else 1
            resolution = stage.resolution
            stages.append(stage)
            self.feature_info.append(dict(num_chs=embed_dim[i], reduction=stride, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.head = NormLinear(self.num_features, num_classes, drop_rate) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def no_weight_decay(self):
        return {k for k in self.state_dict() if 'attention_biases' in k}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r'^patch_embed',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.linear if isinstance(self.head, NormLinear) else self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        if num_classes > 0 and not self.global_pool.pool_type:
            raise ValueError('a classifier needs pooled features: give a global_pool')
        self.head = NormLinear(self.num_features, num_classes, self.drop_rate) if num_classes > 0 else nn.Identity()

    def _check_input(self, x: torch.Tensor) -> None:
        check_image_input(x, self.in_chans, 'EfficientViT', MIN_INPUT_SIZE, weight=self.patch_embed.conv1.conv.weight)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features of the selected stages (NCHW), and the final features unless ``intermediates_only``."""
        if output_fmt != 'NCHW':
            raise ValueError(f'output_fmt {output_fmt!r} is not supported: NCHW only')
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self._stem(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = checkpoint(stage, x) if self.grad_checkpointing and not torch.jit.is_scripting() else stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if x.device.type == 'cpu' and not _in_graph_capture():
            # on CPU the depthwise convolutions (most of this model's time) run 1.5-5x faster on
            # channels-last tensors in oneDNN; every later op keeps the layout
            x = x.contiguous(memory_format=torch.channels_last)
        return self.patch_embed(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _convert_official(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Cream layout -> timm layout (the rules are in ../shared/reference/efficientvit.md §7).

    Cream keeps each stage as one flat ``blocks{s}`` Sequential: for s = 2, 3 its first three
    entries are the transition (``.0`` pre-merge [Residual(DW), Residual(FFN)], ``.1`` PatchMerging,
    ``.2`` post-merge pair), which timm names ``downsample.res1`` / ``.patchmerge`` / ``.res2``.
    """
    out = {}
    for k, v in state_dict.items():
        if k.endswith('attention_bias_idxs'):
            continue
        k = re.sub(r'\.c\.', '.conv.', k)
        k = re.sub(r'^head\.l\.', 'head.linear.', k)
        m = re.match(r'^patch_embed\.(\d+)\.(.*)$', k)
        if m:
            k = f'patch_embed.conv{int(m.group(1)) // 2 + 1}.{m.group(2)}'
        m = re.match(r'^blocks1\.(\d+)\.(.*)$', k)
        if m:
            k = f'stages.0.blocks.{m.group(1)}.{m.group(2)}'
        m = re.match(r'^blocks([23])\.(\d+)\.(.*)$', k)
        if m:
            s, j, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
            if j < 3:
                k = f'stages.{s}.downsample.{("res1", "patchmerge", "res2")[j]}.{rest}'
            else:
                k = f'stages.{s}.blocks.{j - 3}.{rest}'
        out[k] = v
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: EfficientVit) -> Dict[str, torch.Tensor]:
    """Load timm/zoo or official Cream checkpoints; resize attention biases to the model's windows."""
    for wrapper in ('model', 'state_dict', 'model_ema'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    if any(k.startswith('blocks1.') for k in state_dict):
        state_dict = _convert_official(state_dict)
    target = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k.endswith('attention_bias_idxs'):
            continue
        if k.endswith('attention_biases') and k in target and v.shape != target[k].shape:
            # window resolution differs from the checkpoint's (another build size): resize the table
            v = resize_rel_pos_bias_table_levit(v.T, target[k].shape[::-1]).T.contiguous()
        out[k] = v
    return out


def _create_efficientvit(variant: str, pretrained: bool = False, **kwargs) -> EfficientVit:
    out_indices = kwargs.pop('out_indices', (0, 1, 2))
    return build_zoo_model(
        EfficientVit, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **kwargs)


def _cfg(variant: str, **kwargs):
    return {
        'url': f'https://github.com/xinyuliu-jeffrey/EfficientVit_Model_Zoo/releases/download/v1.0/{variant}.pth',
        'hf_hub_id': f'timm/{variant}.r224_in1k',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'min_input_size': (3, MIN_INPUT_SIZE, MIN_INPUT_SIZE),
        'pool_size': (4, 4), 'crop_pct': .875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.conv1.conv', 'classifier': 'head.linear', 'license': 'mit',
        'paper_ids': 'arXiv:2305.07027', 'origin_url': 'https://github.com/microsoft/Cream/tree/main/EfficientViT',
        **kwargs,
    }


default_cfgs = zoo_default_cfgs({
    f'efficientvit_m{i}.r224_in1k': _cfg(f'efficientvit_m{i}') for i in range(6)
})

# embed dims, depths, heads, q-kernels (README table of the official repository)
_VARIANTS = {
    'efficientvit_m0': ((64, 128, 192), (1, 2, 3), (4, 4, 4), (5, 5, 5, 5)),
    'efficientvit_m1': ((128, 144, 192), (1, 2, 3), (2, 3, 3), (7, 5, 3, 3)),
    'efficientvit_m2': ((128, 192, 224), (1, 2, 3), (4, 3, 2), (7, 5, 3, 3)),
    'efficientvit_m3': ((128, 240, 320), (1, 2, 3), (4, 3, 4), (5, 5, 5, 5)),
    'efficientvit_m4': ((128, 256, 384), (1, 2, 3), (4, 4, 4), (7, 5, 3, 3)),
    'efficientvit_m5': ((192, 288, 384), (1, 3, 4), (3, 3, 4), (7, 5, 3, 3)),
}


def _variant(name: str, pretrained: bool, kwargs) -> EfficientVit:
    dims, depth, heads, kernels = _VARIANTS[name]
    model_args = dict(img_size=224, embed_dim=dims, depth=depth, num_heads=heads, window_size=(7, 7, 7),
                      kernels=kernels)
    return _create_efficientvit(name, pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def efficientvit_m0(pretrained: bool = False, **kwargs) -> EfficientVit:
    return _variant('efficientvit_m0', pretrained, kwargs)


@register_zoo_model
def efficientvit_m1(pretrained: bool = False, **kwargs) -> EfficientVit:
    return _variant('efficientvit_m1', pretrained, kwargs)


@register_zoo_model
def efficientvit_m2(pretrained: bool = False, **kwargs) -> EfficientVit:
    return _variant('efficientvit_m2', pretrained, kwargs)


@register_zoo_model
def efficientvit_m3(pretrained: bool = False, **kwargs) -> EfficientVit:
    return _variant('efficientvit_m3', pretrained, kwargs)


@register_zoo_model
def efficientvit_m4(pretrained: bool = False, **kwargs) -> EfficientVit:
    return _variant('efficientvit_m4', pretrained, kwargs)


@register_zoo_model
def efficientvit_m5(pretrained: bool = False, **kwargs) -> EfficientVit:
    return _variant('efficientvit_m5', pretrained, kwargs)
