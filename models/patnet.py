"""PATNet: Partial Convolution Meets Visual Attention.

Paper: "Partial Convolution Meets Visual Attention" (Huang et al., arXiv 2503.03148). The PAT blocks' official code is
https://github.com/haiduo/PartialNet (the companion PartialNet paper, arXiv 2502.01303, which keeps a ``patnet_t0``
flag); this file re-implements its PartialNet without DPConv.

The three PAT mixers, each splitting the channels into a convolved / attended part and an "untouched" part:

* PAT_ch (stages 1-3): 3x3 conv on C/4 channels; the other 3C/4 are gated by an "enhanced Gaussian" channel
  attention (spatial mean + unbiased std -> (1, 2) conv -> BN -> hard-sigmoid) and batch-normalised.
* PAT_sf (stage 4): 3x3 conv on C/4 channels; self-attention with a Euclidean iRPE bias (81 buckets) on the other
  3C/4, with a residual around the mixer itself.
* PAT_sp (end of the MLP, where enabled): a spatial hard-sigmoid gate on one half, BN + 1x1 conv on the other.

Network: FasterNet-style stem (4x4/4 conv + BN), 2x2/2 merging convs (channels double), 2x MLP, and a pre-head
1x1 conv to 1280 channels before the classifier.

The official configurations disagree (classification YAMLs vs detection backbones vs the paper figure); both are
registered: ``patnet_t0|t1|t2|s|m|l`` are the classification YAMLs, ``patnet_det_s|m|l`` the detection backbones.

Memory traffic: at inference (no autograd) the mixers write their two channel groups straight into one output
buffer (``out=`` views), so the 3C/4 "untouched" channels are never copied by a ``torch.cat``; only the C/4
convolution result is placed. With autograd on, the plain split/cat formulation runs.
"""
import math
import re
from functools import lru_cache
from typing import Dict, List, Optional, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, SelectAdaptivePool2d, get_act_layer, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from zoo.ops import attention
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['PATNet']


def _use_out_buffers(x: torch.Tensor) -> bool:
    """Write channel groups into one preallocated output (no cat): only without autograd and outside export."""
    return not torch.is_grad_enabled() and not _in_graph_capture()


def _bn_affine(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as per-channel (scale, shift)."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


@torch.no_grad()
def _fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv -> BN as one conv with bias."""
    scale, shift = _bn_affine(bn)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    return fused


@torch.no_grad()
def _fold_bn_before_conv1x1(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """BN -> 1x1 conv as one 1x1 conv with bias (the BN is a per-input-channel affine)."""
    scale, shift = _bn_affine(bn)
    w = conv.weight
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True, device=w.device, dtype=w.dtype)
    fused.weight.copy_(w * scale.view(1, -1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    fused.bias.copy_(bias + w.flatten(1) @ shift)
    return fused


# ----------------------------------------------------------------------------------------------
# iRPE (Euclidean, bias mode, on keys)

def _euclidean_buckets(height, width, alpha: float, beta: float, gamma: float, device=None) -> torch.Tensor:
    """[L, L] bucket ids in [0, 2*beta] for every pair of positions of an height x width map (L = h*w).

    iRPE's piecewise index on the rounded Euclidean distance: identity up to alpha, then logarithmic up to beta;
    shifted by beta so ids are non-negative. Computed in float32 as the official code does (rounding matters).
    Tensor ops only, so ``height``/``width`` may be symbolic sizes: under export the table is built in the graph.
    """
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing='ij')
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=-1)
    diff = pos[:, None, :] - pos[None, :, :]
    dist = diff.square().sum(-1).float().sqrt().round()
    far = dist > alpha
    log_part = alpha + torch.log(dist.clamp(min=alpha) / alpha) / math.log(gamma / alpha) * (beta - alpha)
    idx = torch.where(far, log_part.round().clamp(max=beta), dist)  # distances are >= 0: sign is +1
    return idx.long() + int(beta)


@lru_cache(maxsize=32)
def _euclidean_buckets_cpu(height: int, width: int, alpha: float, beta: float, gamma: float) -> torch.Tensor:
    """Eager-mode memo of :func:`_euclidean_buckets` on the CPU."""
    return _euclidean_buckets(height, width, alpha, beta, gamma)


class EuclideanRPE(nn.Module):
    """Learned per-head bias over Euclidean-distance buckets (iRPE, mode 'bias', method 'euc', ratio r).

    alpha = r, beta = 2r, gamma = 8r; 2*beta + 1 buckets (81 for r = 20). Buckets are recomputed per map size.
    """

    def __init__(self, num_heads: int, ratio: float = 20., device=None, dtype=None):
        super().__init__()
        self.alpha, self.beta, self.gamma = 1. * ratio, 2. * ratio, 8. * ratio
        self.num_buckets = 2 * int(self.beta) + 1
        self.lookup_table_bias = nn.Parameter(torch.zeros(num_heads, self.num_buckets, device=device, dtype=dtype))
        self._bucket_cache: Dict[Tuple[int, int, str], torch.Tensor] = {}

    def buckets(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        if _in_graph_capture():
            # symbolic sizes under export/compile: a cached table would bake the export size into the graph
            return _euclidean_buckets(height, width, self.alpha, self.beta, self.gamma, device)
        key = (height, width, str(device))
        ids = self._bucket_cache.get(key)
        if ids is None:
            ids = _euclidean_buckets_cpu(height, width, self.alpha, self.beta, self.gamma).to(device)
            if len(self._bucket_cache) > 16:
                self._bucket_cache.clear()
            self._bucket_cache[key] = ids
        return ids

    def forward(self, height: int, width: int) -> torch.Tensor:
        """The additive attention bias [num_heads, L, L] for an height x width map."""
        ids = self.buckets(height, width, self.lookup_table_bias.device)
        return self.lookup_table_bias[:, ids]


class RPEAttention(nn.Module):
    """Multi-head self-attention over all positions of an NCHW map, with the iRPE bias added after scaling."""

    def __init__(
            self,
            dim: int,
            num_heads: int = 4,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            rpe_ratio: float = 20.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dim % num_heads:
            raise ValueError(f'attention dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpe_k = EuclideanRPE(num_heads, rpe_ratio, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        N = H * W
        qkv = self.qkv(x.flatten(2).transpose(1, 2)).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.rpe_k(H, W).to(q.dtype)
        if self.training and self.attn_drop > 0.:
            # dropout on the attention matrix (official training recipe) needs the explicit softmax
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            attn = F.dropout(attn.softmax(dim=-1), self.attn_drop, training=True)
            out = attn @ v
        else:
            out = attention(q, k, v, bias=bias, scale=self.scale)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))
        return out.transpose(1, 2).reshape(B, C, H, W)


# ----------------------------------------------------------------------------------------------
# PAT mixers

class GaussianChannelGate(nn.Module):
    """The 'enhanced Gaussian' channel attention of PAT_ch: g = hardsigmoid(BN(conv_(1,2)([mean, std])))."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.cfc1 = nn.Conv2d(dim, dim, kernel_size=(1, 2), bias=False, **dd)
        self.bn = nn.BatchNorm2d(dim, **dd)

    def fuse(self):
        if isinstance(self.bn, nn.BatchNorm2d):
            self.cfc1 = _fold_bn_into_conv(self.cfc1, self.bn)
            self.bn = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The gate [B, C, 1, 1] for x (not applied)."""
        flat = x.flatten(2)
        stats = torch.stack([flat.mean(-1), flat.std(-1)], dim=-1).unsqueeze(2)  # [B, C, 1, 2], unbiased std
        return F.hardsigmoid(self.bn(self.cfc1(stats)))


class PatChannel(nn.Module):
    """PAT_ch: 3x3 conv on the first C/n_div channels, BN(x2 * gate(x2)) on the rest."""

    def __init__(self, dim: int, n_div: int = 4, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dim_conv = dim // n_div
        self.dim_untouched = dim - self.dim_conv
        self.partial_conv3 = nn.Conv2d(self.dim_conv, self.dim_conv, 3, 1, 1, bias=False, **dd)
        self.attn = GaussianChannelGate(self.dim_untouched, **dd)
        self.norm = nn.BatchNorm2d(self.dim_untouched, **dd)

    def fuse(self):
        self.attn.fuse()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        gate = self.attn(x2)
        if self.norm.training or not _use_out_buffers(x):
            return torch.cat([self.partial_conv3(x1), self.norm(x2 * gate)], dim=1)
        # eval BN(x2 * g) = x2 * (g * scale) + shift, written straight into the output's channel slice
        out = torch.empty_like(x)
        scale, shift = _bn_affine(self.norm)
        torch.addcmul(shift.view(1, -1, 1, 1), x2, gate * scale.view(1, -1, 1, 1), out=out[:, self.dim_conv:])
        out[:, :self.dim_conv] = self.partial_conv3(x1)
        return out


class PatSelfAttn(nn.Module):
    """PAT_sf with its residual: x + concat(conv3x3(x1), RPEAttention(LayerNorm2d(x2)))."""

    def __init__(
            self,
            dim: int,
            n_div: int = 4,
            num_heads: int = 4,
            attn_drop: float = 0.1,
            proj_drop: float = 0.1,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dim_conv = dim // n_div
        self.dim_untouched = dim - self.dim_conv
        self.partial_conv3 = nn.Conv2d(self.dim_conv, self.dim_conv, 3, 1, 1, bias=False, **dd)
        self.norm = LayerNorm2d(self.dim_untouched, eps=1e-6, **dd)
        self.attn = RPEAttention(self.dim_untouched, num_heads, attn_drop=attn_drop, proj_drop=proj_drop, **dd)

    def fuse(self):
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        y1 = self.partial_conv3(x1)
        y2 = self.attn(self.norm(x2))
        if not _use_out_buffers(x):
            return x + torch.cat([y1, y2], dim=1)
        # the residual add writes each group into its slice: no concat copy
        out = torch.empty_like(x)
        torch.add(x1, y1, out=out[:, :self.dim_conv])
        torch.add(x2, y2, out=out[:, self.dim_conv:])
        return out


class PatSpatial(nn.Module):
    """PAT_sp (``partial_spatial_attn_layer_reverse``): BN(x1 * hardsigmoid(conv1x1(x1))) | conv1x1(BN(x2))."""

    def __init__(self, dim: int, partial: float = 0.5, n_head: int = 1, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dim_conv = int(partial * dim)
        self.dim_gated = dim - self.dim_conv
        self.conv = nn.Conv2d(self.dim_conv, self.dim_conv, 1, bias=False, **dd)
        self.conv_attn = nn.Conv2d(self.dim_gated, n_head, 1, bias=False, **dd)
        self.norm = nn.BatchNorm2d(self.dim_gated, **dd)
        self.norm2 = nn.BatchNorm2d(self.dim_conv, **dd)

    def fuse(self):
        if isinstance(self.norm2, nn.BatchNorm2d):
            self.conv = _fold_bn_before_conv1x1(self.norm2, self.conv)
            self.norm2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_gated, self.dim_conv], dim=1)
        weight = F.hardsigmoid(self.conv_attn(x1))
        if self.norm.training or not _use_out_buffers(x):
            return torch.cat([self.norm(x1 * weight), self.conv(self.norm2(x2))], dim=1)
        out = torch.empty_like(x)
        scale, shift = _bn_affine(self.norm)
        torch.addcmul(shift.view(1, -1, 1, 1), x1 * weight, scale.view(1, -1, 1, 1), out=out[:, :self.dim_gated])
        out[:, self.dim_gated:] = self.conv(self.norm2(x2))
        return out


# ----------------------------------------------------------------------------------------------
# block, stage

class PatBlock(nn.Module):
    """PAT_ch block: x + MLP(PAT_ch(x)); PAT_sf block: y = x + PAT_sf(x); y + MLP(y). MLP ends in PAT_sp if on."""

    def __init__(
            self,
            dim: int,
            mixer: str = 'channel',
            n_div: int = 4,
            mlp_ratio: float = 2.,
            use_spatial_attn: bool = False,
            num_heads: int = 4,
            attn_drop: float = 0.1,
            proj_drop: float = 0.1,
            drop_path: float = 0.,
            layer_scale_init_value: float = 0.,
            act_layer=nn.ReLU,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.mixer_residual = mixer == 'self'
        if mixer == 'self':
            self.spatial_mixing = PatSelfAttn(dim, n_div, num_heads, attn_drop, proj_drop, **dd)
        elif mixer == 'channel':
            self.spatial_mixing = PatChannel(dim, n_div, **dd)
        else:
            raise ValueError(f'unknown PAT mixer {mixer!r} (channel or self)')
        hidden = int(dim * mlp_ratio)
        layers = [
            nn.Conv2d(dim, hidden, 1, bias=False, **dd),
            nn.BatchNorm2d(hidden, **dd),
            act_layer(),
            nn.Conv2d(hidden, dim, 1, bias=False, **dd),
        ]
        if use_spatial_attn:
            layers.append(PatSpatial(dim, **dd))
        self.mlp = nn.Sequential(*layers)
        if layer_scale_init_value > 0:
            self.layer_scale = nn.Parameter(layer_scale_init_value * torch.ones(dim, **dd))
        else:
            self.layer_scale = None
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    @torch.no_grad()
    def fuse(self):
        self.spatial_mixing.fuse()
        if isinstance(self.mlp[1], nn.BatchNorm2d):
            self.mlp[0] = _fold_bn_into_conv(self.mlp[0], self.mlp[1])
            self.mlp[1] = nn.Identity()
        if len(self.mlp) > 4:
            self.mlp[4].fuse()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.spatial_mixing(x)  # PAT_sf already includes its own residual
        if self.mixer_residual:
            shortcut = x
        x = self.mlp(x)
        if self.layer_scale is not None:
            x = x * self.layer_scale.view(1, -1, 1, 1)
        return shortcut + self.drop_path(x)


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int, patch_size: int = 2, device=None, dtype=None):
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, patch_size, patch_size, bias=False, device=device, dtype=dtype)
        self.norm = nn.BatchNorm2d(out_dim, device=device, dtype=dtype)

    def fuse(self):
        if isinstance(self.norm, nn.BatchNorm2d):
            self.reduction = _fold_bn_into_conv(self.reduction, self.norm)
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class PatchEmbed(PatchMerging):
    """Stem: k x k / k conv + BN (same math as merging, official key names ``proj``/``norm``)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4, device=None, dtype=None):
        nn.Module.__init__(self)
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, bias=False, device=device, dtype=dtype)
        self.norm = nn.BatchNorm2d(embed_dim, device=device, dtype=dtype)

    def fuse(self):
        if isinstance(self.norm, nn.BatchNorm2d):
            self.proj = _fold_bn_into_conv(self.proj, self.norm)
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatStage(nn.Module):
    def __init__(
            self,
            dim: int,
            out_dim: int,
            depth: int,
            downsample: bool,
            merge_size: int = 2,
            drop_path: Optional[List[float]] = None,
            device=None,
            dtype=None,
            **block_kwargs,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = PatchMerging(dim, out_dim, merge_size, device=device, dtype=dtype) if downsample else None
        drop_path = drop_path or [0.] * depth
        self.blocks = nn.Sequential(*[
            PatBlock(out_dim, drop_path=drop_path[i], device=device, dtype=dtype, **block_kwargs)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(blk, x)
            else:
                x = blk(x)
        return x


# ----------------------------------------------------------------------------------------------
# model

class PATNet(nn.Module):
    """PATNet / PartialNet (without DPConv). Stages 1-3 use PAT_ch, stage 4 uses PAT_sf; PAT_sp optional."""

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dim: int = 96,
            depths: Tuple[int, ...] = (1, 2, 8, 2),
            mlp_ratio: float = 2.,
            n_div: int = 4,
            patch_size: int = 4,
            merge_size: int = 2,
            feature_dim: int = 1280,
            use_spatial_attn: bool = False,
            num_heads: int = 4,
            attn_drop_rate: float = 0.1,
            proj_drop_rate: float = 0.1,
            layer_scale_init_value: float = 0.,
            act_layer: Union[str, type] = 'relu',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        """
        Args:
            num_heads: heads of the stage-4 attention (the official ``patnet_t0`` flag gives 4, every config sets it).
            attn_drop_rate, proj_drop_rate: dropout inside PAT_sf (the official code hard-codes 0.1 for both).
        """
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        act_layer = get_act_layer(act_layer)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.num_stages = len(depths)
        self.patch_size = patch_size
        self.reduction_total = patch_size * merge_size ** (self.num_stages - 1)
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, **dd)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device='cpu')]
        self.feature_info = []
        stages = []
        prev_dim = embed_dim
        for i, depth in enumerate(depths):
            dim = int(embed_dim * 2 ** i)
            stages.append(PatStage(
                prev_dim, dim, depth,
                downsample=i > 0,
                merge_size=merge_size,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                mixer='self' if i == self.num_stages - 1 else 'channel',
                n_div=n_div,
                mlp_ratio=mlp_ratio,
                use_spatial_attn=use_spatial_attn,
                num_heads=num_heads,
                attn_drop=attn_drop_rate,
                proj_drop=proj_drop_rate,
                layer_scale_init_value=layer_scale_init_value,
                act_layer=act_layer,
                **dd,
            ))
            self.feature_info.append(dict(num_chs=dim, reduction=patch_size * merge_size ** i, module=f'stages.{i}'))
            prev_dim = dim
        self.stages = nn.Sequential(*stages)

        self.num_features = prev_dim
        self.head_hidden_size = feature_dim
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.conv_head = nn.Conv2d(prev_dim, feature_dim, 1, bias=False, **dd)
        self.act = act_layer()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = nn.Linear(feature_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {'*.lookup_table_bias'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^patch_embed',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^conv_head', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
            self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        dev = self.conv_head.weight.device if isinstance(self.conv_head, nn.Conv2d) else None
        self.classifier = (
            nn.Linear(self.head_hidden_size, num_classes, device=dev) if num_classes > 0 else nn.Identity())

    @torch.no_grad()
    def fuse(self) -> 'PATNet':
        """Fold every foldable BatchNorm into its conv for inference (in place; eval mode; returns self)."""
        self.eval()
        for m in list(self.modules()):
            if m is not self and hasattr(m, 'fuse') and isinstance(m, (PatchEmbed, PatchMerging, PatBlock)):
                m.fuse()
        return self

    def _check_input(self, x: torch.Tensor):
        # the patch embedding and the merges do not pad: the last stage needs one whole reduction_total patch (and
        # then PAT_ch's unbiased std has its >= 2 positions at stride 16)
        check_image_input(x, self.in_chans, 'PATNet', self.reduction_total,
                          f'the patch embedding and the merges do not pad: the stride-{self.reduction_total} last '
                          'stage needs a whole patch',
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
        """Stage outputs (NCHW). ``norm`` is accepted for API compatibility: PATNet has no final norm."""
        if output_fmt != 'NCHW':
            raise ValueError(f'PATNet intermediates are NCHW only, got output_fmt={output_fmt!r}')
        self._check_input(x)
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.patch_embed(x)
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
    ):
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.conv_head = nn.Identity()
            self.act = nn.Identity()
            self.head_hidden_size = self.num_features
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.patch_embed(x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool.is_identity():
            # pooling disabled (''): the pre-head conv belongs to the pooled head, so the unpooled stage-4 map
            # (num_features channels) is returned, as for the other zoo models
            return x
        x = self.global_pool(x)
        x = self.act(self.conv_head(x))
        x = self.flatten(x)
        if self.drop_rate > 0.:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------
# weights

_OFFICIAL_STAGE_KEY = re.compile(r'^stages\.(\d+)\.(blocks|reduction|norm)\.')


def _map_official_key(k: str) -> Optional[str]:
    """Official PartialNet key -> zoo key; None for keys the zoo model does not have (detection out-norms).

    Official ``stages`` is flat: blocks at even indices 2i, PatchMerging at odd indices 2i - 1.
    """
    m = _OFFICIAL_STAGE_KEY.match(k)
    if m:
        idx, kind = int(m.group(1)), m.group(2)
        rest = k[m.end():]
        if kind == 'blocks':
            return f'stages.{idx // 2}.blocks.{rest}'
        return f'stages.{(idx + 1) // 2}.downsample.{kind}.{rest}'
    if k.startswith('avgpool_pre_head.1.'):
        return 'conv_head.' + k[len('avgpool_pre_head.1.'):]
    if k.startswith('head.'):
        return 'classifier.' + k[len('head.'):]
    if re.match(r'^norm\d+\.', k):
        return None  # detection-only output norms (fork_feat=True); not part of the backbone
    return k


def _is_official_layout(state_dict: Dict[str, torch.Tensor]) -> bool:
    # the zoo layout never has stages.N.reduction / stages.N.norm (they live under stages.N.downsample)
    return any(re.match(r'^stages\.\d+\.(reduction|norm)\.', k) or k.startswith(('avgpool_pre_head.', 'head.'))
               or re.match(r'^norm\d+\.', k) for k in state_dict)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official PartialNet checkpoint (flat ``stages`` Sequential, ``avgpool_pre_head``/``head``) -> zoo layout.

    Unwraps ``{'model': ...}`` / ``{'state_dict': ...}`` (and Lightning's ``model.`` prefix); idempotent on zoo
    state dicts. Detection-only ``norm0/2/4/6`` are dropped.
    """
    for wrapper in ('state_dict', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
    if state_dict and all(k.startswith('model.') for k in state_dict):
        state_dict = {k[len('model.'):]: v for k, v in state_dict.items()}
    if not _is_official_layout(state_dict):
        return dict(state_dict)
    out = {}
    for k, v in state_dict.items():
        new_k = _map_official_key(k)
        if new_k is not None:
            out[new_k] = v
    return out


def _create_patnet(variant: str, pretrained: bool = False, **kwargs) -> PATNet:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_zoo_model(
        PATNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs) -> Dict:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic', 'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225),
        'first_conv': 'patch_embed.proj', 'classifier': 'classifier',
        'paper_ids': 'arXiv:2503.03148', 'paper_name': 'Partial Convolution Meets Visual Attention',
        'origin_url': 'https://github.com/haiduo/PartialNet', 'license': 'mit',
        'notes': ('No official ImageNet weights are released (README: "coming soon"); only T0/T1 reproductions on '
                  'Baidu pan (haiduo/PartialNet#3, #4). Published accuracies exist only as a plot.'),
        **kwargs,
    }


default_cfgs = zoo_default_cfgs({
    'patnet_t0': _cfg(),
    'patnet_t1': _cfg(),
    'patnet_t2': _cfg(),
    'patnet_s': _cfg(),
    'patnet_m': _cfg(),
    'patnet_l': _cfg(),
    'patnet_det_s': _cfg(notes='Detection-backbone configuration of detection/backbones/partialnet.py (PartialNet_s).'),
    'patnet_det_m': _cfg(notes='Detection-backbone configuration of detection/backbones/partialnet.py (PartialNet_m).'),
    'patnet_det_l': _cfg(notes='Detection-backbone configuration of detection/backbones/partialnet.py (PartialNet_l).'),
})


# classification configurations: cfg/PartialNet_<v>.yaml
@register_zoo_model
def patnet_t0(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=32, depths=(1, 2, 8, 2), act_layer='gelu', use_spatial_attn=False)
    return _create_patnet('patnet_t0', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_t1(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=48, depths=(1, 2, 8, 2), act_layer='gelu', use_spatial_attn=True)
    return _create_patnet('patnet_t1', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_t2(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=64, depths=(2, 2, 6, 4), act_layer='relu', use_spatial_attn=False)
    return _create_patnet('patnet_t2', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_s(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=96, depths=(2, 2, 9, 4), act_layer='relu', use_spatial_attn=False)
    return _create_patnet('patnet_s', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_m(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=128, depths=(2, 3, 16, 4), act_layer='relu', use_spatial_attn=False)
    return _create_patnet('patnet_m', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_l(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=160, depths=(2, 3, 20, 4), act_layer='relu', use_spatial_attn=False)
    return _create_patnet('patnet_l', pretrained, **dict(model_args, **kwargs))


# detection-backbone configurations: detection/backbones/partialnet.py (PAT_sp on, the constructor default)
@register_zoo_model
def patnet_det_s(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=128, depths=(1, 2, 13, 2), act_layer='relu', use_spatial_attn=True)
    return _create_patnet('patnet_det_s', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_det_m(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=144, depths=(3, 4, 18, 3), act_layer='relu', use_spatial_attn=True)
    return _create_patnet('patnet_det_m', pretrained, **dict(model_args, **kwargs))


@register_zoo_model
def patnet_det_l(pretrained: bool = False, **kwargs) -> PATNet:
    model_args = dict(embed_dim=192, depths=(3, 4, 18, 3), act_layer='relu', use_spatial_attn=True)
    return _create_patnet('patnet_det_l', pretrained, **dict(model_args, **kwargs))
