""" DaViT: Dual Attention Vision Transformers (ECCV 2022)

Paper: `DaViT: Dual Attention Vision Transformers` - https://arxiv.org/abs/2204.03645
Official code: https://github.com/dingmyu/davit (MIT)

Each stage alternates a spatial block (window self-attention, 7x7 windows, no shift, no relative
bias) and a channel block (attention over channel groups across all tokens: a d x d map per
head). The window attention runs on ``zoo.ops.attention``, the channel attention on its own op,
``zoo.ops.channel_attention`` (softmax((k * scale)^T v) applied to q: DaViT's transposed form).

The state_dict layout is timm's (``timm/models/davit.py``), so timm's ``davit_*`` weights load
unchanged; :func:`checkpoint_filter_fn` converts the official checkpoints. Any input size works:
the stem pads to a multiple of 4, odd maps are padded before each 2x2 downsample, and windows
are zero-padded (after the norm, unmasked, as the official code does) and cropped back.
"""
import re
from functools import partial
from typing import List, Optional, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    LayerNorm2d,
    Mlp,
    NormMlpClassifierHead,
    calculate_drop_path_rates,
    get_norm_layer,
    trunc_normal_,
)
from timm.models import checkpoint, checkpoint_seq
from timm.models._features import feature_take_indices
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.attention import attention
from zoo.ops.channel_attention import channel_attention

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['DaVit']


def _check_input(x: torch.Tensor, in_chans: int, weight: torch.Tensor) -> None:
    check_image_input(x, in_chans, 'DaViT', weight=weight)  # padded to multiples of 4 and 2: any size works


def _num_tiles(size, multiple: int):
    """ceil(size / multiple) as a floor division, so that a symbolic size stays a simple expression."""
    return (size + multiple - 1) // multiple


def _pad_to_multiple(x: torch.Tensor, multiple: Tuple[int, int], channels_last: bool = False) -> torch.Tensor:
    """Zero-pad the spatial dims right/bottom to a multiple (NCHW, or NHWC when ``channels_last``).

    The padded size is written as ``ceil(size / m) * m`` (not ``size + (-size) % m``): under export the symbolic
    shape then stays a product the later reshapes divide exactly, and the pad is unconditional (no guard on size).
    """
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[-2], x.shape[-1])
    pad_b = _num_tiles(H, multiple[0]) * multiple[0] - H
    pad_r = _num_tiles(W, multiple[1]) * multiple[1] - W
    if not _in_graph_capture() and not pad_b and not pad_r:
        return x
    pad = (0, 0, 0, pad_r, 0, pad_b) if channels_last else (0, pad_r, 0, pad_b)
    return F.pad(x, pad)


class ConvPosEnc(nn.Module):
    """Conditional position encoding: x + depthwise 3x3 conv(x)."""

    def __init__(self, dim: int, kernel_size: int = 3, act: bool = False, device=None, dtype=None):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, device=device, dtype=dtype)
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.proj(x))


class Stem(nn.Module):
    """7x7 stride-4 conv + LayerNorm2d; the input is padded to a multiple of 4 first."""

    def __init__(self, in_chs: int, out_chs: int, norm_layer: Type[nn.Module] = LayerNorm2d, device=None, dtype=None):
        super().__init__()
        self.in_chs = in_chs
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=7, stride=4, padding=3, device=device, dtype=dtype)
        self.norm = norm_layer(out_chs, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_chs, self.conv.weight)
        return self.norm(self.conv(_pad_to_multiple(x, (4, 4))))


class Downsample(nn.Module):
    """Pre-norm 2x2 stride-2 conv; odd maps are padded right/bottom first."""

    def __init__(self, in_chs: int, out_chs: int, norm_layer: Type[nn.Module] = LayerNorm2d, device=None, dtype=None):
        super().__init__()
        self.norm = norm_layer(in_chs, device=device, dtype=dtype)
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=2, stride=2, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_pad_to_multiple(self.norm(x), (2, 2)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window: tokens [num_windows * B, N, C]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = attention(q, k, v, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class ChannelAttention(nn.Module):
    """Attention between the channels of each head group over all tokens (``zoo.ops.channel_attention``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = channel_attention(q, k, v, self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class _DualBlockBase(nn.Module):
    """cpe1 -> attention residual -> cpe2 -> MLP residual; maps in and out are NCHW."""

    def __init__(
            self,
            dim: int,
            mlp_ratio: float = 4.,
            drop_path: float = 0.,
            norm_layer: Type[nn.Module] = nn.LayerNorm,
            cpe_act: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.cpe1 = ConvPosEnc(dim, act=cpe_act, **dd)
        self.norm1 = norm_layer(dim, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.cpe2 = ConvPosEnc(dim, act=cpe_act, **dd)
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def mix(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        x = self.cpe1(x).flatten(2).transpose(1, 2)
        x = x + self.drop_path1(self.mix(self.norm1(x), H, W))
        x = self.cpe2(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(B, C, H, W)


class SpatialBlock(_DualBlockBase):
    """Window attention block: the normed map is zero-padded to window multiples, split, attended, cropped."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, qkv_bias: bool = True, **kwargs):
        super().__init__(dim, **kwargs)
        self.window_size = (window_size, window_size)
        self.attn = WindowAttention(dim, num_heads, qkv_bias=qkv_bias, device=kwargs.get('device'),
                                    dtype=kwargs.get('dtype'))

    def mix(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, _, C = x.shape
        wh, ww = self.window_size
        # window counts from the unpadded size, every reshape with explicit sizes (no -1, no Hp // wh): under export
        # the symbolic shapes then need no divisibility reasoning
        nh, nw = _num_tiles(H, wh), _num_tiles(W, ww)
        x = _pad_to_multiple(x.reshape(B, H, W, C), self.window_size, channels_last=True)
        windows = x.reshape(B, nh, wh, nw, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B * nh * nw, wh * ww, C)
        windows = self.attn(windows)
        x = windows.reshape(B, nh, nw, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B, nh * wh, nw * ww, C)
        if _in_graph_capture():
            # a slice's contiguity (is anything padded?) is a shape guard under export (nw * ww != W) that fails at
            # other sizes; gathering the kept rows/columns gives a fresh contiguous tensor without that question
            x = x.index_select(1, torch.arange(H, device=x.device)).index_select(2, torch.arange(W, device=x.device))
        else:
            x = x[:, :H, :W]
        return x.reshape(B, H * W, C)


class ChannelBlock(_DualBlockBase):
    """Channel-group attention block (global receptive field, linear in the number of tokens)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, **kwargs):
        super().__init__(dim, **kwargs)
        self.attn = ChannelAttention(dim, num_heads, qkv_bias=qkv_bias, device=kwargs.get('device'),
                                     dtype=kwargs.get('dtype'))

    def mix(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.attn(x)


class DaVitStage(nn.Module):
    """Optional downsample, then ``depth`` (spatial, channel) block pairs."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            depth: int,
            num_heads: int,
            downsample: bool = True,
            window_size: int = 7,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            drop_path_rates: Tuple[float, ...] = (),
            norm_layer: Type[nn.Module] = LayerNorm2d,
            norm_layer_cl: Type[nn.Module] = nn.LayerNorm,
            cpe_act: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.grad_checkpointing = False
        self.downsample = Downsample(in_chs, out_chs, norm_layer=norm_layer, **dd) if downsample else nn.Identity()
        common = dict(mlp_ratio=mlp_ratio, norm_layer=norm_layer_cl, cpe_act=cpe_act, **dd)
        dprs = list(drop_path_rates) or [0.] * depth
        self.blocks = nn.Sequential(*[
            nn.Sequential(
                SpatialBlock(out_chs, num_heads, window_size=window_size, qkv_bias=qkv_bias, drop_path=dprs[i],
                             **common),
                ChannelBlock(out_chs, num_heads, qkv_bias=qkv_bias, drop_path=dprs[i], **common),
            )
            for i in range(depth)
        ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class DaVit(nn.Module):
    """DaViT backbone + classifier (pool -> LayerNorm -> fc, the official head order).

    Args:
        in_chans: input channels.
        depths: (spatial, channel) block pairs per stage.
        embed_dims: channels per stage.
        num_heads: heads per stage (also the channel-attention groups).
        window_size: spatial attention window.
        mlp_ratio: MLP hidden ratio.
        qkv_bias: bias on the qkv projections.
        norm_eps: LayerNorm epsilon.
        cpe_act: GELU on the conditional position encodings (off in every released model).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, linear over the block pairs.
        num_classes: classifier outputs (0: no classifier).
        global_pool: 'avg' (default), 'max', ... or '' for unpooled output.
    """

    def __init__(
            self,
            in_chans: int = 3,
            depths: Tuple[int, ...] = (1, 1, 3, 1),
            embed_dims: Tuple[int, ...] = (96, 192, 384, 768),
            num_heads: Tuple[int, ...] = (3, 6, 12, 24),
            window_size: int = 7,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            norm_eps: float = 1e-5,
            cpe_act: bool = False,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if not (len(depths) == len(embed_dims) == len(num_heads)):
            raise ValueError(f'depths {depths}, embed_dims {embed_dims} and num_heads {num_heads} differ in length')
        norm_layer = partial(get_norm_layer('layernorm2d'), eps=norm_eps)
        norm_layer_cl = partial(nn.LayerNorm, eps=norm_eps)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = embed_dims[-1]
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = Stem(in_chans, embed_dims[0], norm_layer=norm_layer, **dd)
        dpr = calculate_drop_path_rates(drop_path_rate, depths, stagewise=True)
        stages = []
        self.feature_info = []
        in_chs = embed_dims[0]
        for i, (depth, dim, heads) in enumerate(zip(depths, embed_dims, num_heads)):
            stages.append(DaVitStage(
                in_chs, dim, depth, heads,
                downsample=i > 0,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path_rates=dpr[i],
                norm_layer=norm_layer,
                norm_layer_cl=norm_layer_cl,
                cpe_act=cpe_act,
                **dd,
            ))
            in_chs = dim
            self.feature_info.append(dict(num_chs=dim, reduction=2 ** (i + 2), module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm_pre = nn.Identity()  # the head norm comes after pooling (official order)
        self.head = NormMlpClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, norm_layer=norm_layer, **dd)
        self.head_hidden_size = self.head.num_features
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module):
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
                (r'^stages\.(\d+).downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm_pre', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, reset_other: bool = False):
        self.num_classes = num_classes
        p = next(self.parameters())
        self.head.reset(num_classes, global_pool, reset_other=reset_other, in_features=self.num_features,
                        device=p.device, dtype=p.dtype)
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (strides 4, 8, 16, 32) as NCHW maps, plus the final features unless ``intermediates_only``."""
        if output_fmt != 'NCHW':
            raise ValueError(f'output_fmt {output_fmt!r} is not supported; DaViT gives NCHW maps')
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        last_idx = len(self.stages) - 1
        intermediates = []
        x = self.stem(x)
        feat_idx = 0
        for feat_idx, stage in enumerate(stages):
            x = checkpoint(stage, x) if self.grad_checkpointing and not torch.jit.is_scripting() else stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.norm_pre(x) if norm and feat_idx == last_idx else x)
        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.norm_pre(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        if prune_norm or prune_end:
            self.norm_pre = nn.Identity()
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '', reset_other=True)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self.norm_pre(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# official key -> timm/zoo key, applied in order
_OFFICIAL_KEY_RULES = (
    (r'^patch_embeds\.(\d+)\.', r'stages.\1.downsample.'),
    (r'^main_blocks\.(\d+)\.', r'stages.\1.blocks.'),
    (r'^stages\.0\.downsample\.', 'stem.'),
    (r'\.cpe\.0\.', '.cpe1.'),
    (r'\.cpe\.1\.', '.cpe2.'),
    (r'^norms\.', 'head.norm.'),
    (r'^head\.(weight|bias)$', r'head.fc.\1'),
)


def _convert_official_key(key: str) -> str:
    for pattern, repl in _OFFICIAL_KEY_RULES:
        key = re.sub(pattern, repl, key)
    # the stem / downsample conv is `proj` officially, `conv` here (attention `proj` layers keep their name)
    return re.sub(r'^(stem|stages\.\d+\.downsample)\.proj\.', r'\1.conv.', key)


def checkpoint_filter_fn(state_dict: dict, model: nn.Module = None) -> dict:
    """Official dingmyu/davit checkpoints -> this layout (= timm's); timm/zoo state dicts pass through."""
    for wrapper in ('state_dict', 'model', 'state_dict_ema', 'model_ema'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    if 'stem.conv.weight' in state_dict:
        return state_dict
    return {_convert_official_key(k): v for k, v in state_dict.items()}


def _create_davit(variant: str, pretrained: bool = False, **kwargs) -> DaVit:
    out_indices = kwargs.pop('out_indices', tuple(range(len(kwargs.get('depths', (1, 1, 3, 1))))))
    return build_zoo_model(
        DaVit, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs):
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.95, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'head.fc',
        'license': 'mit',
        'paper_ids': 'arXiv:2204.03645', 'origin_url': 'https://github.com/dingmyu/davit',
        **kwargs,
    }


_NO_WEIGHTS = 'no public weights: the authors never released them (dingmyu/davit#10)'
default_cfgs = zoo_default_cfgs({
    # timm's converted copies of the official ImageNet-1k weights (same layout, so they load unchanged)
    'davit_tiny.msft_in1k': _cfg(hf_hub_id='timm/davit_tiny.msft_in1k', license='apache-2.0'),
    'davit_small.msft_in1k': _cfg(hf_hub_id='timm/davit_small.msft_in1k', license='apache-2.0'),
    'davit_base.msft_in1k': _cfg(hf_hub_id='timm/davit_base.msft_in1k', license='apache-2.0'),
    'davit_large': _cfg(notes=_NO_WEIGHTS),
    'davit_huge': _cfg(notes=_NO_WEIGHTS),
    'davit_giant': _cfg(notes=_NO_WEIGHTS),
})


@register_zoo_model
def davit_tiny(pretrained: bool = False, **kwargs) -> DaVit:
    """DaViT-T: 28.3M params, 82.8 top-1."""
    model_args = dict(depths=(1, 1, 3, 1), embed_dims=(96, 192, 384, 768), num_heads=(3, 6, 12, 24))
    return _create_davit('davit_tiny', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def davit_small(pretrained: bool = False, **kwargs) -> DaVit:
    """DaViT-S: 49.7M params, 84.2 top-1."""
    model_args = dict(depths=(1, 1, 9, 1), embed_dims=(96, 192, 384, 768), num_heads=(3, 6, 12, 24))
    return _create_davit('davit_small', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def davit_base(pretrained: bool = False, **kwargs) -> DaVit:
    """DaViT-B: 87.9M params, 84.6 top-1."""
    model_args = dict(depths=(1, 1, 9, 1), embed_dims=(128, 256, 512, 1024), num_heads=(4, 8, 16, 32))
    return _create_davit('davit_base', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def davit_large(pretrained: bool = False, **kwargs) -> DaVit:
    """DaViT-L (no released weights)."""
    model_args = dict(depths=(1, 1, 9, 1), embed_dims=(192, 384, 768, 1536), num_heads=(6, 12, 24, 48))
    return _create_davit('davit_large', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def davit_huge(pretrained: bool = False, **kwargs) -> DaVit:
    """DaViT-H (no released weights)."""
    model_args = dict(depths=(1, 1, 9, 1), embed_dims=(256, 512, 1024, 2048), num_heads=(8, 16, 32, 64))
    return _create_davit('davit_huge', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def davit_giant(pretrained: bool = False, **kwargs) -> DaVit:
    """DaViT-G (no released weights)."""
    model_args = dict(depths=(1, 1, 12, 3), embed_dims=(384, 768, 1536, 3072), num_heads=(12, 24, 48, 96))
    return _create_davit('davit_giant', pretrained, **dict(model_args, **kwargs))
