"""BiFormer: Vision Transformer with Bi-Level Routing Attention (CVPR 2023).

Paper: https://arxiv.org/abs/2303.08810 -- official code: https://github.com/rayleizhu/BiFormer

Numerics follow the official ``models/biformer.py`` + ``ops/bra_legacy.py`` (the released T/S/B and
``models/biformer_stl.py`` for STL): region routing over ``n_win`` x ``n_win`` regions with per-stage top-k
(1, 4, 16), scale ``qk_dim ** -0.5`` over the whole channel dim (not per head), LePE (5x5 depthwise) on V, stage 4
plain 8-head attention with LePE on the block input and no qkv bias, LayerNorm eps 1e-6, BatchNorm before the head.

Any input size works: every routing stage zero-pads its map to a multiple of ``n_win`` (the official ``auto_pad``
behaviour, padded tokens unmasked) and crops back; at sizes that are multiples the padding is a no-op, so this is
the classification model exactly. ``n_win`` is a constructor argument (official dense configs: 16 for detection,
8 for segmentation).

The bi-level routing attention runs through :mod:`zoo.ops.routing` (Triton kernels on GPU that read routed
key/value regions through the top-k indices instead of gathering a top-k-fold copy).
"""
import re
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, Mlp, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.routing import routing_attention

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['BiFormer']


def _to_regions(x: torch.Tensor, n_win: int, num_heads: int) -> torch.Tensor:
    """[B, Hp, Wp, heads*d] -> region layout [B, heads, n_win**2, rh*rw, d] (regions and tokens row-major)."""
    B, Hp, Wp, C = x.shape
    rh, rw = Hp // n_win, Wp // n_win
    x = x.view(B, n_win, rh, n_win, rw, num_heads, C // num_heads)
    return x.permute(0, 5, 1, 3, 2, 4, 6).reshape(B, num_heads, n_win * n_win, rh * rw, C // num_heads)


def _from_regions(x: torch.Tensor, n_win: int, Hp: int, Wp: int) -> torch.Tensor:
    """Inverse of :func:`_to_regions`: [B, heads, R, T, d] -> [B, Hp, Wp, heads*d]."""
    B, num_heads, _, _, d = x.shape
    x = x.view(B, num_heads, n_win, n_win, Hp // n_win, Wp // n_win, d)
    return x.permute(0, 2, 4, 3, 5, 1, 6).reshape(B, Hp, Wp, num_heads * d)


class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention on an NHWC map (the official legacy BRA, ``kv_downsample_mode='identity'``)."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            n_win: int = 7,
            topk: int = 4,
            qk_dim: Optional[int] = None,
            side_dwconv: int = 5,
    ):
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim or dim
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f'qk_dim {self.qk_dim} and dim {dim} must be divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.n_win = n_win
        self.topk = topk
        self.scale = self.qk_dim ** -0.5  # the whole qk dim, as in the official model
        self.qkv = nn.Linear(dim, 2 * self.qk_dim + dim)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        pad_b, pad_r = (-H) % self.n_win, (-W) % self.n_win
        if _in_graph_capture() or pad_b or pad_r:
            # zero padding before the projection, padded tokens unmasked: the official auto_pad
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r
        q, k, v = self.qkv(x).split([self.qk_dim, self.qk_dim, self.dim], dim=-1)
        # LePE over the whole (padded) V map: it crosses region borders
        lepe = self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        q, k, v = (_to_regions(t, self.n_win, self.num_heads) for t in (q, k, v))
        out = routing_attention(q, k, v, self.topk, self.scale)
        out = _from_regions(out, self.n_win, Hp, Wp) + lepe
        out = self.proj(out)
        if _in_graph_capture() or pad_b or pad_r:
            out = out[:, :H, :W].contiguous()
        return out


class AttentionLePE(nn.Module):
    """Global multi-head attention + LePE on the input (official stage 4: 8 heads, no qkv bias)."""

    def __init__(self, dim: int, num_heads: int = 8, side_dwconv: int = 5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} must be divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = out.transpose(1, 2).reshape(B, H, W, C)
        out = out + self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out)


class BiFormerBlock(nn.Module):
    """(conv pos-embed) -> pre-norm attention -> pre-norm MLP; NCHW in and out, NHWC inside."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            n_win: int = 7,
            topk: int = 4,
            mlp_ratio: float = 3.,
            drop_path: float = 0.,
            pos_embed_kernel: int = 3,
            side_dwconv: int = 5,
            last_stage_heads: int = 8,
    ):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, pos_embed_kernel, padding=pos_embed_kernel // 2, groups=dim) \
            if pos_embed_kernel > 0 else None
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if topk > 0:
            self.attn = BiLevelRoutingAttention(dim, num_heads, n_win=n_win, topk=topk, side_dwconv=side_dwconv)
        elif topk == -2:
            self.attn = AttentionLePE(dim, num_heads=last_stage_heads, side_dwconv=side_dwconv)
        else:
            raise ValueError(f'topk must be > 0 (routing) or -2 (global attention + LePE), got {topk}')
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            x = x + self.pos_embed(x)
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


def _downsample(in_dim: int, out_dim: int, stem_type: str) -> nn.Sequential:
    if stem_type == 'conv':  # BiFormer T/S/B: conv 3x3 s2 -> BN
        return nn.Sequential(nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1), nn.BatchNorm2d(out_dim))
    # STL (Swin layout): BN -> conv 2x2 s2
    return nn.Sequential(nn.BatchNorm2d(in_dim), nn.Conv2d(in_dim, out_dim, 2, stride=2))


def _stem(in_chans: int, dim: int, stem_type: str) -> nn.Sequential:
    if stem_type == 'conv':  # two overlapping 3x3 s2 convs (indices as in the official Sequential)
        return nn.Sequential(
            nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1), nn.BatchNorm2d(dim // 2), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim))
    return nn.Sequential(nn.Conv2d(in_chans, dim, 4, stride=4), nn.BatchNorm2d(dim))


class BiFormerStage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, downsample: bool, stem_type: str,
                 drop_path: List[float], **block_kwargs):
        super().__init__()
        self.downsample = _downsample(in_dim, dim, stem_type) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[BiFormerBlock(dim, drop_path=drop_path[i], **block_kwargs) for i in range(depth)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class BiFormer(nn.Module):
    """BiFormer (``stem_type='conv'``: T/S/B) and BiFormer-STL (``stem_type='patch'``: Swin-T layout)."""

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            depths: Tuple[int, ...] = (2, 2, 8, 2),
            embed_dims: Tuple[int, ...] = (64, 128, 256, 512),
            head_dim: int = 32,
            mlp_ratios: Tuple[float, ...] = (3, 3, 3, 3),
            topks: Tuple[int, ...] = (1, 4, 16, -2),
            n_win: int = 7,
            side_dwconv: int = 5,
            pos_embed_kernel: int = 3,
            last_stage_heads: int = 8,
            stem_type: str = 'conv',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ):
        super().__init__()
        if stem_type not in ('conv', 'patch'):
            raise ValueError(f"stem_type must be 'conv' or 'patch', got {stem_type!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.grad_checkpointing = False
        # the smallest input side and what sets it. T/S/B: the 3x3 stride-2 convs (padding 1) round up, so any image
        # keeps a 1x1 last map (the routing pads it to n_win regions). STL: the 4x4 patch conv and 2x2 merges floor.
        self.min_side = 1 if stem_type == 'conv' else 32
        self._min_side_reason = '' if stem_type == 'conv' else \
            'the 4x4 stride-4 patch conv and the 2x2 stride-2 merges do not pad: the stride-32 stage needs 32 px'

        self.stem = _stem(in_chans, embed_dims[0], stem_type)
        dpr = [x.tolist() for x in torch.linspace(0, drop_path_rate, sum(depths), device='cpu').split(list(depths))]
        stages, self.feature_info = [], []
        for i, depth in enumerate(depths):
            stages.append(BiFormerStage(
                embed_dims[max(i - 1, 0)], embed_dims[i], depth, downsample=i > 0, stem_type=stem_type,
                drop_path=dpr[i], num_heads=embed_dims[i] // head_dim, n_win=n_win, topk=topks[i],
                mlp_ratio=mlp_ratios[i], pos_embed_kernel=pos_embed_kernel, side_dwconv=side_dwconv,
                last_stage_heads=last_stage_heads))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = ClassifierHead(embed_dims[-1], num_classes, pool_type=global_pool, drop_rate=drop_rate)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm', (99999,)),
            ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def _check_input(self, x: torch.Tensor):
        check_image_input(x, self.in_chans, 'BiFormer', self.min_side, self._min_side_reason,
                          weight=self.stem[0].weight)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (NCHW, strides 4-32, before the final BatchNorm; ``norm=True`` applies it to the last)."""
        if output_fmt != 'NCHW':
            raise ValueError(f'output_fmt must be NCHW, got {output_fmt!r}')
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        x = self.stem(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm and i == last_idx else x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _unwrap(state_dict: dict) -> dict:
    for key in ('model', 'state_dict', 'model_ema', 'state_dict_ema'):
        if key in state_dict and isinstance(state_dict[key], dict):
            return state_dict[key]
    return state_dict


_BLOCK_RENAMES = (
    (r'\.attn\.qkv\.qkv\.', '.attn.qkv.'),
    (r'\.attn\.wo\.', '.attn.proj.'),
    (r'\.mlp\.0\.', '.mlp.fc1.'),
    (r'\.mlp\.[23]\.', '.mlp.fc2.'),  # T/S/B: Linear, Identity, GELU, Linear; STL: Linear, GELU, Linear
)


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Official BiFormer / BiFormer-STL checkpoints (``{'model': ...}`` wrapper or bare) -> zoo layout.

    Already-converted state dicts pass through unchanged.
    """
    state_dict = _unwrap(state_dict)
    state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    if not any(k.startswith('downsample_layers.') for k in state_dict):
        return state_dict
    out = {}
    for k, v in state_dict.items():
        m = re.match(r'^downsample_layers\.(\d+)\.(.*)$', k)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            k = f'stem.{rest}' if i == 0 else f'stages.{i}.downsample.{rest}'
        else:
            k = re.sub(r'^stages\.(\d+)\.(?:blocks\.)?(\d+)\.', r'stages.\1.blocks.\2.', k)
            if k.startswith('stages.'):
                for pattern, repl in _BLOCK_RENAMES:
                    k = re.sub(pattern, repl, k)
            k = re.sub(r'^head\.', 'head.fc.', k)
        out[k] = v
    return out


def _create_biformer(variant: str, pretrained: bool = False, **kwargs) -> BiFormer:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_zoo_model(
        BiFormer, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


_DEAD_LINK = ('official OneDrive share link is dead (rayleizhu/BiFormer#53, "The provided share id was malformed"); '
              'load a local copy with pretrained_cfg_overlay=dict(file=...)')


def _cfg(url: str = '', **kwargs) -> dict:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.0', 'classifier': 'head.fc', 'license': 'mit',
        'paper_ids': 'arXiv:2303.08810', 'origin_url': 'https://github.com/rayleizhu/BiFormer', **kwargs,
    }


default_cfgs = zoo_default_cfgs({
    'biformer_tiny.in1k': _cfg(
        url='https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHEOoGkgwgQzEDlM/root/content', notes=_DEAD_LINK),
    'biformer_small.in1k': _cfg(
        url='https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHDyM-x9KWRBZ832/root/content', notes=_DEAD_LINK),
    'biformer_base.in1k': _cfg(
        url='https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHI_XPhoadjaNxtO/root/content', notes=_DEAD_LINK),
    'biformer_stl.in1k': _cfg(
        url='https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChSf-m7ujkvx9lIQ1/root/content', notes=_DEAD_LINK),
})


@register_zoo_model
def biformer_tiny(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(depths=(2, 2, 8, 2), embed_dims=(64, 128, 256, 512), mlp_ratios=(3, 3, 3, 3))
    return _create_biformer('biformer_tiny', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def biformer_small(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(64, 128, 256, 512), mlp_ratios=(3, 3, 3, 3))
    return _create_biformer('biformer_small', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def biformer_base(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(96, 192, 384, 768), mlp_ratios=(3, 3, 3, 3))
    return _create_biformer('biformer_base', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def biformer_stl(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(
        depths=(2, 2, 6, 2), embed_dims=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 4), stem_type='patch',
        pos_embed_kernel=0)
    return _create_biformer('biformer_stl', pretrained, **dict(model_args, **kwargs))
