"""A2Mamba: attention-augmented state space models for visual recognition.

Paper: "A2Mamba: Attention-augmented State Space Models for Visual Recognition" (Lou et al., 2025),
https://arxiv.org/abs/2507.16624. Official code: https://github.com/LMMMEng/A2Mamba

The MASS token mixer: 2-D rotary encoding on q/k; two neighborhood-attention branches (dilation 1, and an
adaptive dilation min(H // ws, ws) per axis, whose value is the first branch's output plus its own); then in
stages 1-3 the A2SSM (5x5 depthwise conv + SiLU, an N = 1 selective scan that returns every hidden state,
spatial re-aggregation of those states with the same two attention maps, a head-mixing 1x1 conv, and
y = h * C + x * D in fp32), or in stage 4 full attention over all tokens with a learned bias. The official code
needs NATTEN 0.17 and a custom CUDA scan kernel; here both are :mod:`zoo.ops.neighborhood` and
:mod:`zoo.ops.selective_scan` (pure PyTorch on CPU, Triton on CUDA).

Input sizes: the official code refuses a stage map smaller than its window (any side under 193 px). Here the
token mixer zero-pads such a map to the window size (bottom/right) and crops back, so small and non-square
inputs work; wherever the official code runs, no padding happens and the numbers are the official ones.
"""
import math
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.attention import attention
from zoo.ops.neighborhood import neighborhood_av, neighborhood_qk
from zoo.ops.selective_scan import selective_scan_states

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs
from ._lmmm_layers import DWLayerScale, ProjectionHead, conv_stem

__all__ = ['A2Mamba', 'MASS', 'A2SSM']


def _island_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the official code's fp32 islands: fp32, or the input's own where it is wider (a float64 run
    stays float64 throughout, as the official code's does)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _ln(dim):
    return LayerNorm2d(dim, eps=1e-6)


class RoPE2d(nn.Module):
    """2-D rotary phases: per pixel (i, j) the angles cat(i * freqs, j * freqs), freqs repeated in pairs."""

    def __init__(self, head_dim: int):
        super().__init__()
        angle = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4))
        self.register_buffer('angle', angle.repeat_interleave(2), persistent=True)  # official: persistent

    def forward(self, H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(H, device=self.angle.device, dtype=self.angle.dtype)[:, None] * self.angle
        cols = torch.arange(W, device=self.angle.device, dtype=self.angle.dtype)[:, None] * self.angle
        phase = torch.cat([rows[:, None, :].expand(H, W, -1), cols[None, :, :].expand(H, W, -1)], dim=-1)
        return phase.sin(), phase.cos()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(a, b) -> (-b, a) for every adjacent pair of the last axis."""
    return torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_pairs(x) * sin


class A2SSM(nn.Module):
    """Attention-augmented SSM: an all-states N = 1 selective scan re-aggregated with MASS's attention maps."""

    def __init__(self, dim: int, num_heads: int, d_state: int = 1, d_conv: int = 5,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.dim, self.num_heads, self.d_state = dim, num_heads, d_state
        self.dt_rank = math.ceil(dim / 16)
        self.conv2d = nn.Conv2d(dim, dim, d_conv, padding=d_conv // 2, groups=dim)
        self.x_proj_weight = nn.Parameter(torch.empty(self.dt_rank + 2 * d_state, dim))
        self.dt_projs_weight = nn.Parameter(torch.empty(dim, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(dim))
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(dim, 1))
        self.Ds = nn.Parameter(torch.ones(dim))
        self.state_fusion = nn.Conv2d(num_heads, num_heads, 1)
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        if self.x_proj_weight.is_meta:
            return
        dt_min, dt_max, floor = self._dt_range
        bound = self.dim ** -0.5
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        # dt bias so that softplus(bias) is log-uniform in [dt_min, dt_max] (Mamba's initialisation)
        dt = torch.exp(torch.rand(self.dim) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: torch.Tensor, attn1: torch.Tensor, attn2: torch.Tensor, window: int,
                dilation: Tuple[int, int]) -> torch.Tensor:
        B, C, H, W = x.shape
        L = H * W
        xs = F.silu(self.conv2d(x)).reshape(B, C, L)
        x_dbl = torch.matmul(self.x_proj_weight, xs)  # [B, R + 2N, L]
        dts, Bs, Cs = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=1)
        dts = torch.matmul(self.dt_projs_weight, dts)
        island = _island_dtype(xs)
        states = selective_scan_states(xs, dts, -torch.exp(self.A_logs.to(island)), Bs, self.dt_projs_bias, True)
        # [B, C, N, L] -> halves over the heads, re-aggregated with the two attention maps
        hd = C * self.d_state // self.num_heads
        states = states.reshape(B, 2, self.num_heads // 2, hd, H, W).permute(1, 0, 2, 4, 5, 3)
        s1 = neighborhood_av(attn1.to(states.dtype), states[0], window)
        s2 = neighborhood_av(attn2.to(states.dtype), states[1], window, dilation)
        states = torch.cat([s1, s2], dim=1).permute(0, 1, 4, 2, 3).reshape(B, self.num_heads, hd, L)
        # the scan's states are fp32; a half / bf16 model's convolution needs its own dtype (no-op for fp32 weights)
        states = self.state_fusion(states.to(self.state_fusion.weight.dtype)).flatten(1, 2)
        with torch.autocast(device_type=x.device.type, enabled=False):  # fp32 island, as in the official code
            y = states.to(island) * Cs.to(island) + xs.to(island) * self.Ds.to(island).view(-1, 1)
        # back to the parameters' dtype: a no-op for fp32 weights (under autocast too), but a half / bf16 model
        # (e.g. an fp16 ONNX export) would otherwise feed fp32 into half convolutions
        return y.reshape(B, C, H, W).to(self.Ds.dtype)


class MASS(nn.Module):
    """Multi-scale attention-augmented state space mixer (the official ``Attention``)."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, global_mode: bool = False,
                 img_size: Tuple[int, int] = (7, 7)):
        super().__init__()
        if window_size % 2 == 0:
            raise ValueError(f'A2Mamba window size must be odd, got {window_size}')
        self.dim, self.num_heads = dim, num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.window_size = window_size
        self.global_mode = global_mode
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.SiLU())
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm = _ln(dim)
        self.proj = nn.Sequential(_ln(dim), nn.Conv2d(dim, dim, 1))
        # one bias table shared by both neighborhood branches (the official state dict stores it twice)
        self.rpb = nn.Parameter(torch.zeros(num_heads // 2, 2 * window_size - 1, 2 * window_size - 1))
        if global_mode:
            n = img_size[0] * img_size[1]
            self.rpb_global = nn.Parameter(torch.zeros(1, num_heads, n, n))
        else:
            self.ssm = A2SSM(dim, num_heads)

    def _global_bias(self, n_tokens: int) -> torch.Tensor:
        bias = self.rpb_global
        # resized as an (L0 x L0) image, as the official code does (an identity at the same size: always run it
        # under export, where n_tokens is symbolic)
        if _in_graph_capture() or bias.shape[-1] != n_tokens:
            bias = F.interpolate(bias, size=(n_tokens, n_tokens), mode='bicubic', align_corners=False)
        return bias

    def forward(self, x: torch.Tensor, rope: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = self.window_size
        dilation = (min(H // ws, ws), min(W // ws, ws))
        gate = self.gate(x)
        qkv = self.qkv(x)
        lepe = self.lepe(qkv[:, 2 * C:])
        q, k, v = qkv.reshape(B, 3, self.num_heads, self.head_dim, H, W).permute(1, 0, 2, 4, 5, 3)
        sin, cos = rope
        q = apply_rope(q, sin, cos) * self.scale
        k = apply_rope(k, sin, cos)
        q1, q2 = q.chunk(2, dim=1)
        k1, k2 = k.chunk(2, dim=1)
        v1, v2 = v.chunk(2, dim=1)
        attn1 = neighborhood_qk(q1, k1, ws, 1, self.rpb).softmax(dim=-1)
        y1 = neighborhood_av(attn1, v1, ws, 1)
        attn2 = neighborhood_qk(q2, k2, ws, dilation, self.rpb).softmax(dim=-1)
        y2 = neighborhood_av(attn2, y1 + v2, ws, dilation)
        y = torch.cat([y1, y2], dim=1)  # [B, heads, H, W, hd]
        if self.global_mode:
            L = H * W
            # explicit sizes, no -1: a batch of 0 images has no elements to infer a dimension from
            out = attention(q.reshape(B, self.num_heads, L, self.head_dim),
                            k.reshape(B, self.num_heads, L, k.shape[-1]), y.reshape(B, self.num_heads, L, y.shape[-1]),
                            bias=self._global_bias(L), scale=1.0)
            y = out.transpose(-1, -2).reshape(B, C, H, W)
        else:
            y = y.permute(0, 1, 4, 2, 3).reshape(B, C, H, W)
            y = self.ssm(y, attn1, attn2, ws, dilation)
        y = self.norm(y) + lepe
        with torch.autocast(device_type=x.device.type, enabled=False):  # fp32 island, as in the official code
            island = _island_dtype(y)
            y = y.to(island) * gate.to(island)
            return self.proj(y.to(self.proj[-1].weight.dtype))  # fp32 for fp32 weights, as in A2SSM


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x))


class A2MambaBlock(nn.Module):
    """x + DW3x3(x); MASS residual; x + DW3x3(x); FFN residual (layer scale or residual scale optional)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, global_mode: bool, img_size, mlp_ratio: float,
                 drop_path: float = 0., layerscale: bool = False, resscale: bool = False, init_value: float = 1.):
        super().__init__()
        self.resscale = resscale
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = _ln(dim)
        self.token_mixer = MASS(dim, num_heads, window_size, global_mode, img_size)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = _ln(dim)
        self.mlp = FFN(dim, int(mlp_ratio * dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        use_ls = layerscale or resscale
        self.layer_scale1 = DWLayerScale(dim, init_value) if use_ls else nn.Identity()
        self.layer_scale2 = DWLayerScale(dim, init_value) if use_ls else nn.Identity()

    def _mixer(self, x, rope):
        """MASS on a map padded (bottom/right, zeros) to hold one window; the official code refuses smaller maps."""
        H, W = x.shape[-2:]
        ws = self.token_mixer.window_size
        pad_h, pad_w = max(ws - H, 0), max(ws - W, 0)
        if _in_graph_capture() or pad_h or pad_w:  # under export the (possibly zero) padding stays in the graph
            return self.token_mixer(F.pad(x, (0, pad_w, 0, pad_h)), rope)[..., :H, :W]
        return self.token_mixer(x, rope)

    def forward(self, x: torch.Tensor, rope: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.cpe1(x)
        if self.resscale:
            x = self.layer_scale1(x) + self.drop_path(self._mixer(self.norm1(x), rope))
        else:
            x = x + self.drop_path(self.layer_scale1(self._mixer(self.norm1(x), rope)))
        x = x + self.cpe2(x)
        if self.resscale:
            return self.layer_scale2(x) + self.drop_path(self.mlp(self.norm2(x)))
        return x + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))


class A2MambaStage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, num_heads: int, window_size: int, global_mode: bool,
                 img_size, mlp_ratio: float, drop_path: List[float], layerscale: bool, resscale: bool,
                 init_value: float, downsample: bool):
        super().__init__()
        self.window_size = window_size
        self.downsample = nn.Sequential(
            nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim),
        ) if downsample else nn.Identity()
        self.rope = RoPE2d(dim // num_heads)
        self.blocks = nn.ModuleList([
            A2MambaBlock(dim, num_heads, window_size, global_mode, img_size, mlp_ratio, drop_path[i],
                         layerscale, resscale, init_value) for i in range(depth)])
        self.grad_checkpointing = False

    def forward(self, x):
        x = self.downsample(x)
        H, W = x.shape[-2:]
        rope = self.rope(max(H, self.window_size), max(W, self.window_size))
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(blk, x, rope, use_reentrant=False)
            else:
                x = blk(x, rope)
        return x


class A2Mamba(nn.Module):
    def __init__(
            self,
            embed_dims=(64, 128, 256, 512),
            depths=(2, 2, 6, 2),
            num_heads=(2, 4, 8, 16),
            window_size=(11, 9, 7, 7),
            mlp_ratios=(4, 4, 4, 4),
            layerscales=(False, False, False, False),
            resscales=(False, False, False, False),
            layer_init_values=(1, 1, 1, 1),
            projection: int = 1024,
            img_size: Union[int, Tuple[int, int]] = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = embed_dims[-1]
        self.head_hidden_size = projection
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_embed = conv_stem(in_chans, embed_dims[0])
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device='cpu')]
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i in range(4):
            stage_size = (img_size[0] // 2 ** (i + 2), img_size[1] // 2 ** (i + 2))
            self.stages.append(A2MambaStage(
                embed_dims[i - 1] if i else embed_dims[0], embed_dims[i], depths[i], num_heads[i], window_size[i],
                i == 3, stage_size, mlp_ratios[i], dpr[sum(depths[:i]):sum(depths[:i + 1])], layerscales[i],
                resscales[i], layer_init_values[i], downsample=i > 0))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=2 ** (i + 2), module=f'stages.{i}'))
        self.head = ProjectionHead(embed_dims[-1], projection, num_classes, global_pool, drop_rate, proj_bias=True)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {n for n, _ in self.named_parameters() if n.endswith(('rpb', 'rpb_global', 'A_logs', 'Ds'))}

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
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def _check_input(self, x):
        check_image_input(x, self.in_chans, 'A2Mamba', weight=self.patch_embed[0].weight)  # padded convs: any size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.patch_embed(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        if output_fmt != 'NCHW':
            raise ValueError('A2Mamba: output_fmt must be NCHW')
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if (torch.jit.is_scripting() or not stop_early) else self.stages[:max_index + 1]
        intermediates = []
        x = self.patch_embed(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        if prune_head or max_index < 3:
            self.reset_classifier(0, '')
        return take_indices

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- weights --------------------------------------------------------------------------------------------

_HEAD_RENAMES = {'classifier.0.': 'head.proj.', 'classifier.1.': 'head.norm.', 'classifier.4.': 'head.fc.'}


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: A2Mamba) -> Dict[str, torch.Tensor]:
    """Official A2Mamba checkpoint (optionally wrapped in ``model`` / ``state_dict``) -> this implementation.

    ``layers.{2i}`` (stage i) -> ``stages.i``, ``layers.{2i+1}`` (the downsample after it) ->
    ``stages.{i+1}.downsample``, ``classifier.{0,1,4}`` -> ``head.{proj,norm,fc}``; the neighborhood bias stored
    twice (``rpb.0`` / ``rpb.1``, one shared Parameter) becomes ``rpb`` from whichever key is present, and the
    stage-4 global bias ``rpb.2`` becomes ``rpb_global``. Idempotent on converted state dicts.
    """
    for wrapper in ('state_dict', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
    out = {}
    for k, v in state_dict.items():
        k = k.removeprefix('module.')
        for old, new in _HEAD_RENAMES.items():
            if k.startswith(old):
                k = new + k[len(old):]
        if k.startswith('layers.'):
            _, idx, rest = k.split('.', 2)
            idx = int(idx)
            k = f'stages.{idx // 2}.{rest}' if idx % 2 == 0 else f'stages.{idx // 2 + 1}.downsample.{rest}'
        if k.endswith(('.rpb.0', '.rpb.1')):
            base = k[:-2]
            if base in out and not k.endswith('.rpb.0'):
                continue  # rpb.0 already taken (both keys hold the same shared tensor)
            k = base
        elif k.endswith('.rpb.2'):
            k = k[:-len('rpb.2')] + 'rpb_global'
        out[k] = v
    return out


def _create_a2mamba(variant: str, pretrained: bool = False, **kwargs) -> A2Mamba:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_zoo_model(
        A2Mamba, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


def _cfg(url: str = '', **kwargs):
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.0', 'classifier': 'head.fc', **kwargs,
    }


_URL = 'https://huggingface.co/LMMM2025/A2Mamba/resolve/main/a2mamba_pretrained_weights/'
_NOTE = 'official repository has no license file'
default_cfgs = zoo_default_cfgs({
    'a2mamba_n.in1k': _cfg(_URL + 'a2mamba_nano.pth', notes=_NOTE),
    'a2mamba_t.in1k': _cfg(_URL + 'a2mamba_tiny.pth', notes=_NOTE),
    'a2mamba_s.in1k': _cfg(_URL + 'a2mamba_small.pth', notes=_NOTE),
    'a2mamba_b.in1k': _cfg(_URL + 'a2mamba_base.pth', crop_pct=0.95, notes=_NOTE),
    'a2mamba_l.in1k': _cfg(_URL + 'a2mamba_large.pth', crop_pct=0.975, notes=_NOTE),
})

_WINDOWS = (11, 9, 7, 7)


@register_zoo_model
def a2mamba_n(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-N (4M params, 0.8 GFLOPs, 78.7% top-1)."""
    args = dict(embed_dims=(32, 64, 128, 192), depths=(2, 2, 8, 2), num_heads=(2, 2, 4, 8), window_size=_WINDOWS,
                mlp_ratios=(4, 4, 3, 3))
    return _create_a2mamba('a2mamba_n', pretrained, **dict(args, **kwargs))


@register_zoo_model
def a2mamba_t(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-T (15M params, 2.7 GFLOPs, 83.0% top-1)."""
    args = dict(embed_dims=(48, 96, 256, 448), depths=(2, 2, 10, 2), num_heads=(2, 4, 8, 16), window_size=_WINDOWS,
                mlp_ratios=(4, 4, 3, 3))
    return _create_a2mamba('a2mamba_t', pretrained, **dict(args, **kwargs))


@register_zoo_model
def a2mamba_s(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-S (31M params, 5.4 GFLOPs, 84.7% top-1); residual scaling in stages 3-4."""
    args = dict(embed_dims=(64, 128, 320, 512), depths=(2, 4, 12, 4), num_heads=(2, 4, 10, 16), window_size=_WINDOWS,
                mlp_ratios=(4, 4, 3, 3), resscales=(False, False, True, True))
    return _create_a2mamba('a2mamba_s', pretrained, **dict(args, **kwargs))


@register_zoo_model
def a2mamba_b(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-B (51M params, 10.7 GFLOPs, 85.7% top-1)."""
    args = dict(embed_dims=(96, 192, 384, 512), depths=(4, 6, 12, 6), num_heads=(4, 8, 12, 16), window_size=_WINDOWS,
                mlp_ratios=(4, 4, 3.75, 3.75), layerscales=(True,) * 4, layer_init_values=(1, 1, 1e-6, 1e-6))
    return _create_a2mamba('a2mamba_b', pretrained, **dict(args, **kwargs))


@register_zoo_model
def a2mamba_l(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-L (published as 95M params; the official code builds 93.7M; 17.4 GFLOPs, 86.1% top-1)."""
    args = dict(embed_dims=(96, 192, 448, 672), depths=(4, 6, 18, 6), num_heads=(4, 8, 16, 24), window_size=_WINDOWS,
                mlp_ratios=(4, 4, 4, 4), layerscales=(True,) * 4, layer_init_values=(1, 1, 1e-6, 1e-6))
    return _create_a2mamba('a2mamba_l', pretrained, **dict(args, **kwargs))
