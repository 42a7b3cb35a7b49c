"""OverLoCK: an Overview-first-Look-Closely-next ConvNet with context-mixing dynamic kernels.

Paper: "OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels"
(Lou & Yu, CVPR 2025), https://arxiv.org/abs/2502.20087. Official code: https://github.com/LMMMEng/OverLoCK

Three sub-networks: a Base-Net (stem, stages 1-3 of RepConvBlocks with UniRepLKNet's dilated
re-parameterisable large kernels) feeds an Overview-Net (stage 4 at 1/32) whose output is projected into a
context map; the Focus-Net (DynamicConvBlocks at 1/16 and 1/32) then looks closely, guided by that context.
ContMix, its token mixer, predicts per-pixel k x k and K x K kernels from the affinity of each pixel with
7 x 7-pooled context tokens, adds a relative-position bias, softmaxes them and applies them with the NATTEN
0.17 neighborhood rule (windows shifted inward at borders) through :mod:`zoo.ops.neighborhood` -- no natten.

``features_only`` follows the official Mask R-CNN / UperNet backbones: strides 4/8/16/32 with channels
C0, C1, C2 + C3/4 (the stride-16 x concatenated with its context) and C3 + C3/4 (the fused output);
the dense-prediction copies' extra LayerNorms and detection ``h_proj`` are not part of the classifier
weights and are left to the neck.

Deploy form: ``model.reparameterize()`` (or timm's ``reparameterize_model``) merges every dilated branch
and its BN into one depthwise kernel; the outputs agree to float rounding. ``checkpoint_filter_fn`` loads
train-form checkpoints into train- or deploy-form models (folding the branches itself) and deploy-form
checkpoints (``*_reparam.pth``) into either (a train-form model is re-parameterised first).
"""
from functools import partial
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, to_2tuple, trunc_normal_
from timm.layers.grn import GlobalResponseNorm
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.neighborhood import neighborhood_av, neighborhood_rpb

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs
from ._folding import FoldedBN
from ._lmmm_layers import DWLayerScale, ProjectionHead, conv_stem

__all__ = ['OverLoCK', 'ContMix', 'DynamicConvBlock', 'RepConvBlock', 'DilatedReparamBlock']

# (kernel, dilation) of the parallel branches of a DilatedReparamBlock, per large kernel size (UniRepLKNet)
_DILATED_BRANCHES = {
    19: ((5, 1), (7, 1), (9, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    17: ((5, 1), (7, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    15: ((5, 1), (7, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    13: ((5, 1), (7, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    11: ((5, 1), (7, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    9: ((5, 1), (7, 1), (5, 2), (3, 3), (3, 4)),
    7: ((5, 1), (3, 1), (3, 2), (3, 3)),
    5: ((3, 1), (3, 2)),
}

_LN = partial(LayerNorm2d, eps=1e-6)


def _fuse_bn(weight: torch.Tensor, bn: Dict[str, torch.Tensor], eps: float = 1e-5):
    """Fold an eval-mode BN (dict of weight/bias/running_mean/running_var) into a bias-free conv."""
    scale = bn['weight'] / (bn['running_var'] + eps).sqrt()
    return weight * scale.reshape(-1, 1, 1, 1), bn['bias'] - bn['running_mean'] * scale


def _undilate(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """The dense kernel equivalent to a dilated one: taps spread ``dilation`` apart, zeros between."""
    if dilation == 1:
        return kernel
    C, G, k, _ = kernel.shape
    size = dilation * (k - 1) + 1
    out = kernel.new_zeros(C, G, size, size)
    out[:, :, ::dilation, ::dilation] = kernel
    return out


def fold_dilated_reparam(lk_weight, origin_bn, branches, eps: float = 1e-5):
    """Merge a DilatedReparamBlock into one depthwise kernel + bias.

    ``branches`` is a list of (dilation, conv weight, bn dict). Returns (kernel, bias).
    """
    kernel, bias = _fuse_bn(lk_weight, origin_bn, eps)
    K = kernel.shape[-1]
    for dilation, weight, bn in branches:
        w, b = _fuse_bn(weight, bn, eps)
        w = _undilate(w, dilation)
        pad = K // 2 - w.shape[-1] // 2
        kernel = kernel + F.pad(w, [pad] * 4)
        bias = bias + b
    return kernel, bias


def _bn_tensors(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, ...]:
    return bn.weight, bn.bias, bn.running_mean, bn.running_var


class DilatedReparamBlock(FoldedBN):
    """Large depthwise kernel + BN plus parallel dilated depthwise branches + BN (UniRepLKNet), mergeable.

    Eager inference runs the branches merged into one kernel (cached until a weight or statistic changes, see
    :class:`FoldedBN`): one large depthwise conv instead of up to eight convs, BNs and sums -- the dilated
    depthwise convs are PyTorch's slowest CPU convolutions -- with the same result to float rounding. Training
    and graph capture (export) run the branches as written.
    """

    def __init__(self, dim: int, kernel_size: int, deploy: bool = False):
        super().__init__()
        if kernel_size not in _DILATED_BRANCHES:
            raise ValueError(f'DilatedReparamBlock: no branch set for kernel size {kernel_size}')
        self.kernel_size = kernel_size
        self.branches = _DILATED_BRANCHES[kernel_size]
        self.lk_origin = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=deploy)
        if not deploy:
            self.origin_bn = nn.BatchNorm2d(dim)
            for k, r in self.branches:
                conv = nn.Conv2d(dim, dim, k, padding=(r * (k - 1) + 1) // 2, dilation=r, groups=dim, bias=False)
                setattr(self, f'dil_conv_k{k}_{r}', conv)
                setattr(self, f'dil_bn_k{k}_{r}', nn.BatchNorm2d(dim))

    @property
    def deploy(self) -> bool:
        return not hasattr(self, 'origin_bn')

    def _fold_sources(self) -> Tuple[torch.Tensor, ...]:
        src = [self.lk_origin.weight, *_bn_tensors(self.origin_bn)]
        for k, r in self.branches:
            src += [getattr(self, f'dil_conv_k{k}_{r}').weight, *_bn_tensors(getattr(self, f'dil_bn_k{k}_{r}'))]
        return tuple(src)

    def _compute_fold(self, src, scale):
        names = ('weight', 'bias', 'running_mean', 'running_var')
        branches = [(r, src[5 + 5 * i], dict(zip(names, src[6 + 5 * i:10 + 5 * i])))
                    for i, (_, r) in enumerate(self.branches)]
        return fold_dilated_reparam(src[0], dict(zip(names, src[1:5])), branches, self.origin_bn.eps)

    def forward(self, x):
        if self.deploy:
            return self.lk_origin(x)
        if not self.training and not _in_graph_capture():
            weight, bias = self._folded()
            return F.conv2d(x, weight, bias, padding=self.kernel_size // 2, groups=self.lk_origin.groups)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            out = out + getattr(self, f'dil_bn_k{k}_{r}')(getattr(self, f'dil_conv_k{k}_{r}')(x))
        return out

    @torch.no_grad()
    def reparameterize(self):
        """Merge the branches into ``lk_origin`` (weight + bias) and delete them; a no-op when merged."""
        if self.deploy:
            return

        def bn_dict(bn):
            return dict(zip(('weight', 'bias', 'running_mean', 'running_var'), _bn_tensors(bn)))

        branches = [(r, getattr(self, f'dil_conv_k{k}_{r}').weight, bn_dict(getattr(self, f'dil_bn_k{k}_{r}')))
                    for k, r in self.branches]
        kernel, bias = fold_dilated_reparam(self.lk_origin.weight, bn_dict(self.origin_bn), branches,
                                            self.origin_bn.eps)
        old = self.lk_origin
        self.lk_origin = nn.Conv2d(old.in_channels, old.out_channels, self.kernel_size, padding=self.kernel_size // 2,
                                   groups=old.groups, bias=True, device=kernel.device, dtype=kernel.dtype)
        self.lk_origin.weight.copy_(kernel)
        self.lk_origin.bias.copy_(bias)
        del self.origin_bn
        for k, r in self.branches:
            delattr(self, f'dil_conv_k{k}_{r}')
            delattr(self, f'dil_bn_k{k}_{r}')


class SEModule(nn.Module):
    """Squeeze-excite with GELU inside and a sigmoid gate; reduction 8, at least 16 channels."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        inner = max(16, dim // reduction)
        self.proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, inner, 1), nn.GELU(), nn.Conv2d(inner, dim, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.proj(x)


class ResDWConv(nn.Conv2d):
    """x + DWConv(x)."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x):
        return x + super().forward(x)


def _grn(dim):
    return GlobalResponseNorm(dim, eps=1e-6, channels_last=False)


def _layer_scale(dim, init_value):
    return DWLayerScale(dim, init_value) if init_value is not None else nn.Identity()


class RepConvBlock(nn.Module):
    """Base-Net / Overview-Net block: x + DW3x3(x), then a large-kernel conv / SE / GRN inverted bottleneck."""

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 4., ls_init_value=None,
                 res_scale: bool = True, drop_path: float = 0., deploy: bool = False):
        super().__init__()
        self.res_scale = res_scale
        hidden = int(dim * mlp_ratio)
        self.dwconv = ResDWConv(dim, 3)
        self.proj = nn.Sequential(
            _LN(dim),
            DilatedReparamBlock(dim, kernel_size, deploy=deploy),
            nn.BatchNorm2d(dim),
            SEModule(dim),
            nn.Conv2d(dim, hidden, 1),
            nn.GELU(),
            ResDWConv(hidden, 3),
            _grn(hidden),
            nn.Conv2d(hidden, dim, 1),
        )
        self.ls = _layer_scale(dim, ls_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = self.dwconv(x)
        if self.res_scale:  # "residual scaling": the layer scale multiplies the identity branch
            return self.ls(x) + self.drop_path(self.proj(x))
        return x + self.drop_path(self.ls(self.proj(x)))


def _enlarged_size(H, W, K: int):
    """ContMix's enlargement as one branch-free formula on (possibly symbolic) sizes, for export.

    The short side s = min(H, W) becomes K and the long side L becomes K * L // s when s < K; otherwise the size is
    kept (then K * L // s <= L and the max keeps L). The official code computes the long side in floating point,
    ``int(K / s * L)``, which is one less where K * L / s is a whole number that the division rounds below (e.g.
    K=7, s=5, L=45): at such sizes the exported graph enlarges to one more pixel than eager PyTorch.
    """
    s = torch.sym_min(H, W)
    return torch.sym_max(H, K * H // s), torch.sym_max(W, K * W // s)


def _pool_matrix(n_in, n_out, like: torch.Tensor) -> torch.Tensor:
    """[n_out, n_in] averaging matrix of adaptive average pooling (bins floor(i*n/m) .. ceil((i+1)*n/m))."""
    i = torch.arange(n_out, device=like.device)
    start = torch.div(i * n_in, n_out, rounding_mode='floor')
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode='floor')
    j = torch.arange(n_in, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def _adaptive_avg_pool2d_graph(x: torch.Tensor, size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products: exports exactly for symbolic sizes (the exporter's own
    decomposition fixes the bin layout of the example size) and is an identity where the sizes are equal."""
    ph = _pool_matrix(x.shape[-2], size[0], x)
    pw = _pool_matrix(x.shape[-1], size[1], x)
    return torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))


class ContMix(nn.Module):
    """Context-mixing dynamic convolution (the token mixer of a DynamicConvBlock).

    Per pixel, the affinity of its query with 49 pooled context tokens is projected to a small
    (``smk_size``^2) and a large (``kernel_size``^2) kernel per group; with a relative-position bias and a
    softmax, they aggregate the first and second half of the local features over NATTEN-style
    neighborhoods. Parameters are registered on the owning block (official checkpoint layout), so this
    holds only the hyper-parameters.
    """

    def __init__(self, dim: int, num_groups: int, kernel_size: int, smk_size: int):
        super().__init__()
        self.dim = dim
        self.num_groups = num_groups
        self.kernel_size = kernel_size
        self.smk_size = smk_size
        # the official scale uses dim // groups although each query group holds dim / (2 * groups) channels
        self.scale = (dim // num_groups) ** -0.5

    def forward(self, blk: 'DynamicConvBlock', x: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        g, K, k = self.num_groups, self.kernel_size, self.smk_size
        out_size = (H, W)
        capture = _in_graph_capture()
        resized = capture or min(H, W) < K
        if resized:  # the map must hold a K x K window: enlarge (aspect kept), pool back afterwards
            size = _enlarged_size(H, W, K) if capture else (K, int(K / H * W)) if H < W else (int(K / W * H), K)
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
            xf = F.interpolate(xf, size=size, mode='bilinear', align_corners=False)
            H, W = size
        query, context = xf[:, :C], xf[:, C:]
        query = blk.weight_query(query) * self.scale               # [B, C/2, H, W]
        if capture:  # the exporter's adaptive-pool decomposition keeps the example size's bins: pool as matrices
            pool, *layers = blk.weight_key
            key = _adaptive_avg_pool2d_graph(context, to_2tuple(pool.output_size))
            for layer in layers:
                key = layer(key)
        else:
            key = blk.weight_key(context)                          # [B, C/2, 7, 7]
        # explicit sizes, no -1: a batch of 0 images has no elements to infer a dimension from
        query = query.reshape(B, g, query.shape[1] // g, H * W).transpose(-1, -2)   # [B, g, HW, c]
        key = key.reshape(B, g, key.shape[1] // g, key.shape[-2] * key.shape[-1])  # [B, g, c, 49]
        affinity = torch.matmul(query, key)                        # [B, g, HW, 49]
        proj = blk.weight_proj
        kernels = F.linear(affinity, proj.weight.flatten(1), proj.bias)  # [B, g, HW, k^2 + K^2]
        kernels = kernels.reshape(B, g, H, W, kernels.shape[-1])
        attn_small, attn_large = kernels.split([k * k, K * K], dim=-1)
        attn_small = (attn_small + neighborhood_rpb(blk.rpb1, H, W, k)).softmax(dim=-1)
        attn_large = (attn_large + neighborhood_rpb(blk.rpb2, H, W, K)).softmax(dim=-1)
        value = x.reshape(B, 2, g, C // (2 * g), H, W).permute(1, 0, 2, 4, 5, 3)  # [2, B, g, H, W, c]
        out_small = neighborhood_av(attn_small.contiguous(), value[0], k)
        out_large = neighborhood_av(attn_large.contiguous(), value[1], K)
        out = torch.cat([out_small, out_large], dim=1).permute(0, 1, 4, 2, 3).reshape(B, C, H, W)
        if resized:
            out = _adaptive_avg_pool2d_graph(out, out_size) if capture else F.adaptive_avg_pool2d(out, out_size)
        return out


class DynamicConvBlock(nn.Module):
    """Focus-Net block: fuses the features with the context, mixes them with ContMix, then a GRN MLP.

    Input: x [B, C, H, W], the running context h [B, Ch, H, W] and the top-down context h_r; output is the
    fused map [B, C + Ch, H, W] (callers split it back into x and h).
    """

    def __init__(self, dim: int, ctx_dim: int, kernel_size: int = 7, smk_size: int = 5, num_heads: int = 2,
                 mlp_ratio: float = 4., ls_init_value=None, res_scale: bool = True, drop_path: float = 0.,
                 is_first: bool = False, deploy: bool = False, pool_size: int = 7):
        super().__init__()
        ctx_dim = ctx_dim // 4
        out_dim = dim + ctx_dim
        self.dim, self.ctx_dim = dim, ctx_dim
        self.res_scale = res_scale
        self.is_first = is_first
        num_groups = num_heads * 2
        if not is_first:
            self.x_scale = DWLayerScale(ctx_dim, 1.)
            self.h_scale = DWLayerScale(ctx_dim, 1.)
        self.dwconv1 = ResDWConv(out_dim, 3)
        self.norm1 = _LN(out_dim)
        self.fusion = nn.Sequential(
            nn.Conv2d(out_dim, out_dim, 3, padding=1, groups=out_dim),
            nn.BatchNorm2d(out_dim),
            nn.GELU(),
            nn.Conv2d(out_dim, dim, 1),
            _grn(dim),
        )
        self.weight_query = nn.Sequential(nn.Conv2d(dim, dim // 2, 1, bias=False), nn.BatchNorm2d(dim // 2))
        self.weight_key = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool_size), nn.Conv2d(ctx_dim, dim // 2, 1, bias=False), nn.BatchNorm2d(dim // 2))
        self.weight_proj = nn.Conv2d(pool_size ** 2, kernel_size ** 2 + smk_size ** 2, 1)
        self.dyconv_proj = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.lepe = nn.Sequential(DilatedReparamBlock(dim, kernel_size, deploy=deploy), nn.BatchNorm2d(dim))
        self.se_layer = SEModule(dim)
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.SiLU())
        self.proj = nn.Sequential(nn.BatchNorm2d(dim), nn.Conv2d(dim, out_dim, 1))
        self.dwconv2 = ResDWConv(out_dim, 3)
        self.norm2 = _LN(out_dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Conv2d(out_dim, hidden, 1), nn.GELU(), ResDWConv(hidden, 3), _grn(hidden), nn.Conv2d(hidden, out_dim, 1))
        self.ls1 = _layer_scale(out_dim, ls_init_value)
        self.ls2 = _layer_scale(out_dim, ls_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.rpb1 = nn.Parameter(torch.zeros(num_groups, 2 * smk_size - 1, 2 * smk_size - 1))
        self.rpb2 = nn.Parameter(torch.zeros(num_groups, 2 * kernel_size - 1, 2 * kernel_size - 1))
        self.token_mixer = ContMix(dim, num_groups, kernel_size, smk_size)

    def _residual(self, ls, identity, branch):
        if self.res_scale:
            return ls(identity) + self.drop_path(branch)
        return identity + self.drop_path(ls(branch))

    def forward(self, x: torch.Tensor, h: torch.Tensor, h_r: torch.Tensor) -> torch.Tensor:
        if not self.is_first:
            h = self.x_scale(h) + self.h_scale(h_r)
        xf = self.dwconv1(torch.cat([x, h], dim=1))
        identity = xf
        xf = self.norm1(xf)
        x = self.fusion(xf)
        gate = self.gate(x)
        lepe = self.lepe(x)
        y = self.token_mixer(self, x, xf)
        y = self.se_layer(self.dyconv_proj(y) + lepe)
        y = self.proj(gate * y)
        x = self._residual(self.ls1, identity, y)
        x = self.dwconv2(x)
        return self._residual(self.ls2, x, self.mlp(self.norm2(x)))


class CTXDownsample(nn.Module):
    """Stride-2 3x3 conv + BN on the features and (separately) on the context."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.x_proj = nn.Sequential(
            nn.Conv2d(dim, out_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_dim))
        ctx = out_dim // 4
        self.h_proj = nn.Sequential(nn.Conv2d(ctx, ctx, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(ctx))

    def forward(self, x, h):
        return self.x_proj(x), self.h_proj(h)


def _downsample(in_dim, out_dim):
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_dim))


class OverLoCK(nn.Module):
    """OverLoCK classifier / backbone (official module names, so official checkpoints map almost 1:1)."""

    def __init__(
            self,
            depth=(2, 2, 2, 2),
            sub_depth=(4, 2),
            embed_dim=(96, 192, 384, 768),
            kernel_size=(7, 7, 7, 7),
            mlp_ratio=(4, 4, 4, 4),
            sub_mlp_ratio=(4, 4),
            sub_num_heads=(4, 8),
            ls_init_value=(None, None, 1, 1),
            res_scale: bool = True,
            smk_size: int = 5,
            deploy: bool = False,
            projection: int = 1024,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dim = list(embed_dim)
        ctx_dim = embed_dim[3] // 4
        self.num_features = fusion_dim = embed_dim[3] + ctx_dim
        self.head_hidden_size = projection
        self.grad_checkpointing = False

        n_blocks = sum(depth) + sum(sub_depth)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, n_blocks, device='cpu')]
        dpr_iter = iter(dpr)

        self.patch_embed1 = conv_stem(in_chans, embed_dim[0])
        self.patch_embed2 = _downsample(embed_dim[0], embed_dim[1])
        self.patch_embed3 = _downsample(embed_dim[1], embed_dim[2])
        self.patch_embed4 = _downsample(embed_dim[2], embed_dim[3])
        self.high_level_proj = nn.Conv2d(embed_dim[3], ctx_dim, 1)
        self.patch_embedx = CTXDownsample(embed_dim[2], embed_dim[3])
        for i in range(4):
            blocks = nn.ModuleList([
                RepConvBlock(embed_dim[i], kernel_size[i], mlp_ratio[i], ls_init_value[i], res_scale,
                             next(dpr_iter), deploy) for _ in range(depth[i])])
            setattr(self, f'blocks{i + 1}', blocks)
        for j, stage in enumerate((2, 3)):
            blocks = nn.ModuleList([
                DynamicConvBlock(
                    embed_dim[stage], embed_dim[3], kernel_size[stage], smk_size, sub_num_heads[j], sub_mlp_ratio[j],
                    ls_init_value[stage], res_scale, next(dpr_iter), is_first=(stage == 2 and i == 0), deploy=deploy)
                for i in range(sub_depth[j])])
            setattr(self, f'sub_blocks{stage + 1}', blocks)
        self.head = ProjectionHead(fusion_dim, projection, num_classes, global_pool, drop_rate, proj_bias=False)

        self.feature_info = [
            dict(num_chs=embed_dim[0], reduction=4, module='blocks1'),
            dict(num_chs=embed_dim[1], reduction=8, module='blocks2'),
            dict(num_chs=embed_dim[2] + ctx_dim, reduction=16, module='sub_blocks3'),
            dict(num_chs=fusion_dim, reduction=32, module='sub_blocks4'),
        ]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- timm API -------------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        return {n for n, _ in self.named_parameters() if n.endswith(('rpb1', 'rpb2'))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r'^patch_embed1',
            blocks=[
                (r'^(?:patch_embed|blocks)(\d+)' if coarse else r'^blocks(\d+)\.(\d+)', None),
                (r'^patch_embed(\d+)', (0,)),
                (r'^(?:high_level_proj|patch_embedx)', (4,)),
                (r'^sub_blocks(\d+)\.(\d+)', None) if not coarse else (r'^sub_blocks(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    @torch.no_grad()
    def reparameterize(self):
        """Merge every DilatedReparamBlock into a single depthwise conv (deploy form), in place."""
        for m in self.modules():
            if isinstance(m, DilatedReparamBlock):
                m.reparameterize()
        return self

    # ---- forward --------------------------------------------------------------------------------------
    def _run(self, blk, *args):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(blk, *args, use_reentrant=False)
        return blk(*args)

    def _check_input(self, x: torch.Tensor):
        check_image_input(x, self.in_chans, 'OverLoCK', weight=self.patch_embed1[0].weight)  # padded convs: any size

    def _stages(self, x: torch.Tensor, last: int = 3):
        """Yield (index, feature map) for the four feature levels, stopping after ``last``."""
        self._check_input(x)
        x = self.patch_embed1(x)
        for blk in self.blocks1:
            x = self._run(blk, x)
        yield 0, x
        if last < 1:
            return
        x = self.patch_embed2(x)
        for blk in self.blocks2:
            x = self._run(blk, x)
        yield 1, x
        if last < 2:
            return
        # Overview-Net: the stride-32 context that guides the Focus-Net
        x = self.patch_embed3(x)
        for blk in self.blocks3:
            x = self._run(blk, x)
        ctx = self.patch_embed4(x)
        for blk in self.blocks4:
            ctx = self._run(blk, ctx)
        ctx_ori = self.high_level_proj(ctx)
        ctx_up = F.interpolate(ctx_ori, size=x.shape[2:], mode='bilinear', align_corners=False)
        # Focus-Net
        fused, h = None, ctx_up
        C = self.embed_dim[2]
        for blk in self.sub_blocks3:
            fused = self._run(blk, x, h, ctx_up)
            x, h = fused[:, :C], fused[:, C:]
        yield 2, fused
        if last < 3:
            return
        x, h = self.patch_embedx(x, h)
        C = self.embed_dim[3]
        for blk in self.sub_blocks4:
            fused = self._run(blk, x, h, ctx_ori)
            x, h = fused[:, :C], fused[:, C:]
        yield 3, fused

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for _, x in self._stages(x):
            pass
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
            raise ValueError('OverLoCK: output_fmt must be NCHW')
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        last = max_index if (stop_early or intermediates_only) else 3
        intermediates = []
        for i, x in self._stages(x, last):
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        drop = {
            0: ('patch_embed2', 'blocks2'),
            1: ('patch_embed3', 'blocks3', 'patch_embed4', 'blocks4', 'high_level_proj', 'sub_blocks3'),
            2: ('patch_embedx', 'sub_blocks4'),
        }
        for level in range(max_index, 3):
            for name in drop[level]:
                setattr(self, name, nn.ModuleList() if name.startswith(('blocks', 'sub_blocks')) else nn.Identity())
        if prune_head or max_index < 3:
            self.reset_classifier(0, '')
        return take_indices

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- weights --------------------------------------------------------------------------------------------

_HEAD_RENAMES = {'head.0.': 'head.proj.', 'head.1.': 'head.norm.', 'head.4.': 'head.fc.'}


def _fold_state_dict_reparam(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Train-form DilatedReparamBlock entries -> deploy form (one ``lk_origin`` weight + bias)."""
    out = dict(state_dict)
    prefixes = [k[:-len('origin_bn.weight')] for k in state_dict if k.endswith('origin_bn.weight')]
    for p in prefixes:
        bn = lambda name: {s: out.pop(f'{p}{name}.{s}') for s in ('weight', 'bias', 'running_mean', 'running_var')}  # noqa
        origin = bn('origin_bn')
        out.pop(f'{p}origin_bn.num_batches_tracked', None)
        kernel = out[f'{p}lk_origin.weight']
        branches = []
        for k, r in _DILATED_BRANCHES[kernel.shape[-1]]:
            weight = out.pop(f'{p}dil_conv_k{k}_{r}.weight')
            branches.append((r, weight, bn(f'dil_bn_k{k}_{r}')))
            out.pop(f'{p}dil_bn_k{k}_{r}.num_batches_tracked', None)
        kernel, bias = fold_dilated_reparam(kernel.float(), origin, branches)
        out[f'{p}lk_origin.weight'], out[f'{p}lk_origin.bias'] = kernel, bias
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: OverLoCK) -> Dict[str, torch.Tensor]:
    """Official OverLoCK checkpoint (train or deploy form, optionally wrapped) -> this implementation.

    Renames the head, reshapes GRN ``gamma``/``beta`` to timm's ``weight``/``bias``, drops the training-only
    ``aux_head``, and reconciles the re-parameterisation form with ``model``. Idempotent.
    """
    for wrapper in ('state_dict', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
    out = {}
    for k, v in state_dict.items():
        k = k.removeprefix('module.')
        if k.startswith('aux_head.'):
            continue
        for old, new in _HEAD_RENAMES.items():
            if k.startswith(old):
                k = new + k[len(old):]
        if k.endswith('.gamma') or k.endswith('.beta'):
            k = k.rsplit('.', 1)[0] + ('.weight' if k.endswith('.gamma') else '.bias')
            v = v.reshape(-1)
        out[k] = v
    ckpt_deploy = not any(k.endswith('origin_bn.weight') for k in out)
    model_deploy = all(m.deploy for m in model.modules() if isinstance(m, DilatedReparamBlock))
    if ckpt_deploy and not model_deploy:
        model.reparameterize()  # a deploy-form checkpoint cannot be un-merged: switch the model instead
    elif model_deploy and not ckpt_deploy:
        out = _fold_state_dict_reparam(out)
    return out


def _create_overlock(variant: str, pretrained: bool = False, **kwargs) -> OverLoCK:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_zoo_model(
        OverLoCK, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


def _cfg(url: str = '', **kwargs):
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed1.0', 'classifier': 'head.fc', 'license': 'apache-2.0', **kwargs,
    }


_URL = 'https://github.com/LMMMEng/OverLoCK/releases/download/v1/'
_REPARAM_NOTE = 'deploy-form weights: loading them re-parameterises the model (merged large kernels)'
default_cfgs = zoo_default_cfgs({
    'overlock_xt.in1k': _cfg(_URL + 'overlock_xt_in1k_224.pth', crop_pct=0.925),
    'overlock_xt.in1k_reparam': _cfg(_URL + 'overlock_xt_in1k_224_reparam.pth', crop_pct=0.925, notes=_REPARAM_NOTE),
    'overlock_t.in1k': _cfg(_URL + 'overlock_t_in1k_224.pth', crop_pct=0.95),
    'overlock_t.in1k_reparam': _cfg(_URL + 'overlock_t_in1k_224_reparam.pth', crop_pct=0.95, notes=_REPARAM_NOTE),
    'overlock_s.in1k': _cfg(_URL + 'overlock_s_in1k_224.pth', crop_pct=0.95),
    'overlock_s.in1k_reparam': _cfg(_URL + 'overlock_s_in1k_224_reparam.pth', crop_pct=0.95, notes=_REPARAM_NOTE),
    'overlock_b.in1k': _cfg(_URL + 'overlock_b_in1k_224.pth', crop_pct=0.975),
    'overlock_b.in1k_reparam': _cfg(_URL + 'overlock_b_in1k_224_reparam.pth', crop_pct=0.975, notes=_REPARAM_NOTE),
})

_COMMON = dict(kernel_size=(17, 15, 13, 7), mlp_ratio=(4, 4, 4, 4), sub_mlp_ratio=(3, 3))


@register_zoo_model
def overlock_xt(pretrained: bool = False, **kwargs) -> OverLoCK:
    """OverLoCK-XT (16M params, 2.6 GFLOPs, 82.7% top-1)."""
    args = dict(depth=(2, 2, 3, 2), sub_depth=(6, 2), embed_dim=(56, 112, 256, 336), sub_num_heads=(4, 6), **_COMMON)
    return _create_overlock('overlock_xt', pretrained, **dict(args, **kwargs))


@register_zoo_model
def overlock_t(pretrained: bool = False, **kwargs) -> OverLoCK:
    """OverLoCK-T (33M params, 5.5 GFLOPs, 84.2% top-1)."""
    args = dict(depth=(4, 4, 6, 2), sub_depth=(12, 2), embed_dim=(64, 128, 256, 512), sub_num_heads=(4, 8), **_COMMON)
    return _create_overlock('overlock_t', pretrained, **dict(args, **kwargs))


@register_zoo_model
def overlock_s(pretrained: bool = False, **kwargs) -> OverLoCK:
    """OverLoCK-S (56M params, 9.7 GFLOPs, 84.8% top-1)."""
    args = dict(depth=(6, 6, 8, 3), sub_depth=(16, 3), embed_dim=(64, 128, 320, 512), sub_num_heads=(8, 16), **_COMMON)
    return _create_overlock('overlock_s', pretrained, **dict(args, **kwargs))


@register_zoo_model
def overlock_b(pretrained: bool = False, **kwargs) -> OverLoCK:
    """OverLoCK-B (95M params, 16.7 GFLOPs, 85.1% top-1)."""
    args = dict(depth=(8, 8, 10, 4), sub_depth=(20, 4), embed_dim=(80, 160, 384, 576), sub_num_heads=(6, 9), **_COMMON)
    return _create_overlock('overlock_b', pretrained, **dict(args, **kwargs))
