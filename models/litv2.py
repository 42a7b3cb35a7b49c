"""LITv2: Fast Vision Transformers with HiLo Attention (NeurIPS 2022).

Paper: https://arxiv.org/abs/2205.13213 -- official code: https://github.com/ziplab/LITv2

Numerics follow the official ``classification/models`` (``litv2.py``, ``blocks.py``, ``attentions.py::HiLo``,
``patch_embed.py::DTM``): stages 1-2 are ConvFFN blocks (no attention), stages 3-4 HiLo blocks; HiLo splits the
heads by ``alpha`` into Lo-Fi heads (every query against keys/values of the ``ws`` x ``ws`` average-pooled input)
and Hi-Fi heads (``ws`` x ``ws`` window attention), each branch with its own projection, Hi-Fi output first.
Down-sampling is the deformable token merging (DCNv1, 2x2 stride 2) -> BatchNorm -> GELU, run here through
``torchvision.ops.deform_conv2d`` (no custom CUDA extension, no apex).

Any H, W (non-square too): like the official detection/segmentation backbones, the input is zero-padded to a
multiple of the patch size and every HiLo layer zero-pads its map to a multiple of the window before both
branches and crops back; at classification sizes this is the classification model exactly.
"""
import re
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torchvision.ops import deform_conv2d
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.attention import attention

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['LITv2']


# the 4x4 patch embedding pads to a multiple of 4, the three 2x2 stride-2 merges floor: ceil(H / 4) >= 8
_MIN_SIDE = 29


class HiLo(nn.Module):
    """HiLo attention on an NHWC map: Hi-Fi window heads + Lo-Fi pooled-key heads, concatenated Hi-Fi first."""

    def __init__(self, dim: int, num_heads: int = 8, window_size: int = 2, alpha: float = 0.9, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} must be divisible by num_heads {num_heads}')
        head_dim = dim // num_heads
        self.ws = window_size
        if window_size == 1:  # plain global attention: every head is Lo-Fi, nothing pooled
            self.l_heads, self.h_heads = num_heads, 0
        else:
            self.l_heads = int(num_heads * alpha)
            self.h_heads = num_heads - self.l_heads
        self.l_dim, self.h_dim = self.l_heads * head_dim, self.h_heads * head_dim
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5  # the same head-dim scale in both branches
        if self.l_heads > 0:
            self.l_q = nn.Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(dim, self.l_dim * 2, bias=qkv_bias)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads > 0:
            self.h_qkv = nn.Linear(dim, self.h_dim * 3, bias=qkv_bias)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    def hifi(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        ws, nh, hd = self.ws, self.h_heads, self.head_dim
        hg, wg = H // ws, W // ws
        qkv = self.h_qkv(x).view(B, hg, ws, wg, ws, 3, nh, hd)
        # -> [3, B * windows, heads, ws*ws, hd]
        qkv = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, B * hg * wg, nh, ws * ws, hd)
        out = attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        out = out.view(B, hg, wg, nh, ws, ws, hd).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, H, W, self.h_dim)
        return self.h_proj(out)

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        nh, hd = self.l_heads, self.head_dim
        q = self.l_q(x).view(B, H * W, nh, hd).transpose(1, 2)
        if self.ws > 1:  # keys/values from the average-pooled *input*
            x = F.avg_pool2d(x.permute(0, 3, 1, 2), self.ws, self.ws).permute(0, 2, 3, 1)
        kv = self.l_kv(x).reshape(B, x.shape[1] * x.shape[2], 2, nh, hd).permute(2, 0, 3, 1, 4)  # no -1: B may be 0
        out = attention(q, kv[0], kv[1], scale=self.scale)
        return self.l_proj(out.transpose(1, 2).reshape(B, H, W, self.l_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        pad_b, pad_r = (-H) % self.ws, (-W) % self.ws
        # the official detection/segmentation padding: zeros enter both branches (under export always in the graph)
        if _in_graph_capture() or pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        if self.h_heads == 0:
            out = self.lofi(x)
        elif self.l_heads == 0:
            out = self.hifi(x)
        else:
            out = torch.cat((self.hifi(x), self.lofi(x)), dim=-1)
        if _in_graph_capture() or pad_b or pad_r:
            out = out[:, :H, :W].contiguous()
        return out


class DWMlp(nn.Module):
    """fc1 -> depthwise 3x3 conv -> GELU -> fc2, on NHWC."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self.drop(self.act(x))
        return self.drop(self.fc2(x))


class LITv2Block(nn.Module):
    """HiLo block (``has_msa``) or ConvFFN block (MLP only, stages 1-2); NHWC in and out."""

    def __init__(self, dim: int, num_heads: int, has_msa: bool, window_size: int = 2, alpha: float = 0.9,
                 mlp_ratio: float = 4., qkv_bias: bool = True, drop_path: float = 0.):
        super().__init__()
        if has_msa:
            self.norm1 = nn.LayerNorm(dim)
            self.attn = HiLo(dim, num_heads, window_size=window_size, alpha=alpha, qkv_bias=qkv_bias)
        else:
            self.norm1 = self.attn = None
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DWMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DeformConv2x2(nn.Module):
    """DCNv1, 2x2 stride 2, one deformable group: offsets from a plain conv of the same geometry."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim, 2, 2))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.conv_offset = nn.Conv2d(in_dim, 2 * 2 * 2, 2, stride=2)
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        # offsets start at zero (a plain strided conv), as the official DeformConv2dPack
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.conv_offset(x)
        if torch.is_autocast_enabled(x.device.type) or (x.device.type == 'cpu' and x.element_size() < 4):
            # torchvision's autocast rule for this op (fp32) is registered for CUDA only, and its CPU kernel has no
            # half types: run it in fp32 here too and hand back the input's dtype
            out = deform_conv2d(x.float(), offset.float(), self.weight.float(), self.bias.float(), stride=2)
            return out.to(x.dtype)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=2)


class DTM(nn.Module):
    """Deformable token merging: DCN 2x2 s2 -> BatchNorm -> GELU; NHWC in and out (odd sides floor, as official)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.dconv = DeformConv2x2(in_dim, out_dim)
        self.norm = nn.BatchNorm2d(out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.dconv(x.permute(0, 3, 1, 2).contiguous())))
        return x.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Conv 4x4 stride 4 -> LayerNorm; pads the input to a multiple of the patch (official detection code)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        pad_b, pad_r = (-H) % self.patch_size, (-W) % self.patch_size
        if _in_graph_capture() or pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class LITv2Stage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, num_heads: int, has_msa: bool, window_size: int,
                 alpha: float, mlp_ratio: float, qkv_bias: bool, drop_path: List[float], downsample: bool):
        super().__init__()
        self.downsample = DTM(in_dim, dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            LITv2Block(dim, num_heads, has_msa, window_size=window_size, alpha=alpha, mlp_ratio=mlp_ratio,
                       qkv_bias=qkv_bias, drop_path=drop_path[i])
            for i in range(depth)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class LITv2(nn.Module):
    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dim: int = 96,
            depths: Tuple[int, ...] = (2, 2, 6, 2),
            num_heads: Tuple[int, ...] = (3, 6, 12, 24),
            has_msa: Tuple[int, ...] = (0, 0, 1, 1),
            local_ws: Tuple[int, ...] = (0, 0, 2, 1),
            alpha: float = 0.9,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            img_size: Optional[Union[int, Tuple[int, int]]] = None,  # accepted for timm; any size works
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        dims = [embed_dim * 2 ** i for i in range(len(depths))]
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, dims[0])
        dpr = [x.tolist() for x in torch.linspace(0, drop_path_rate, sum(depths), device='cpu').split(list(depths))]
        stages, self.feature_info = [], []
        for i, depth in enumerate(depths):
            stages.append(LITv2Stage(
                dims[max(i - 1, 0)], dims[i], depth, num_heads[i], bool(has_msa[i]), local_ws[i], alpha, mlp_ratio,
                qkv_bias, dpr[i], downsample=i > 0))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = ClassifierHead(dims[-1], num_classes, pool_type=global_pool, drop_rate=drop_rate)
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
            stem=r'^patch_embed',
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
        check_image_input(x, self.in_chans, 'LITv2', _MIN_SIDE, 'the stride-4 patch embedding pads, but the three '
                          '2x2 stride-2 merges do not: the stride-32 last stage needs 8 stride-4 tokens',
                          weight=self.patch_embed.proj.weight)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (strides 4-32, before the next DTM; ``norm=True`` applies the final LayerNorm to the last)."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f'output_fmt must be NCHW or NHWC, got {output_fmt!r}')
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        to_fmt = (lambda t: t.permute(0, 3, 1, 2)) if output_fmt == 'NCHW' else (lambda t: t)  # noqa: E731
        x = self.patch_embed(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(to_fmt(self.norm(x) if norm and i == last_idx else x))
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self.norm(x)
        return x.permute(0, 3, 1, 2), intermediates

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
        x = self.stages(self.patch_embed(x))
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _unwrap(state_dict: dict) -> dict:
    for key in ('model', 'state_dict', 'model_ema', 'state_dict_ema'):
        if key in state_dict and isinstance(state_dict[key], dict):
            return state_dict[key]
    return state_dict


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Official LITv2 checkpoints (``{'model': ...}`` wrapper or bare) -> zoo layout (idempotent).

    ``layers.i.downsample`` (the DTM after stage i) becomes ``stages.{i+1}.downsample``.
    """
    state_dict = _unwrap(state_dict)
    state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    if not any(k.startswith('layers.') for k in state_dict):
        return state_dict
    out = {}
    for k, v in state_dict.items():
        m = re.match(r'^layers\.(\d+)\.downsample\.(.*)$', k)
        if m:
            rest = m.group(2).replace('norm_layer.', 'norm.')
            k = f'stages.{int(m.group(1)) + 1}.downsample.{rest}'
        else:
            k = re.sub(r'^layers\.(\d+)\.blocks\.', r'stages.\1.blocks.', k)
            k = k.replace('.mlp.dwconv.dwconv.', '.mlp.dwconv.')
            k = re.sub(r'^head\.', 'head.fc.', k)
        out[k] = v
    return out


def _create_litv2(variant: str, pretrained: bool = False, **kwargs) -> LITv2:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_zoo_model(
        LITv2, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


_RELEASES = 'https://github.com/ziplab/LITv2/releases/download/v1.0/'


def _cfg(url: str = '', **kwargs) -> dict:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head.fc', 'license': 'apache-2.0',
        'paper_ids': 'arXiv:2205.13213', 'origin_url': 'https://github.com/ziplab/LITv2', **kwargs,
    }


default_cfgs = zoo_default_cfgs({
    'litv2_s.in1k': _cfg(url=_RELEASES + 'litv2_s.pth'),
    'litv2_m.in1k': _cfg(url=_RELEASES + 'litv2_m.pth'),
    'litv2_b.in1k': _cfg(url=_RELEASES + 'litv2_b.pth'),
    'litv2_b_384.in1k': _cfg(url=_RELEASES + 'litv2_b_384.pth', input_size=(3, 384, 384), pool_size=(12, 12),
                             crop_pct=1.0),
})


@register_zoo_model
def litv2_s(pretrained: bool = False, **kwargs) -> LITv2:
    model_args = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
    return _create_litv2('litv2_s', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def litv2_m(pretrained: bool = False, **kwargs) -> LITv2:
    model_args = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
    return _create_litv2('litv2_m', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def litv2_b(pretrained: bool = False, **kwargs) -> LITv2:
    model_args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
    return _create_litv2('litv2_b', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def litv2_b_384(pretrained: bool = False, **kwargs) -> LITv2:
    model_args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
    return _create_litv2('litv2_b_384', pretrained, **dict(model_args, **kwargs))
