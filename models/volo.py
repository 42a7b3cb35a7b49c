""" VOLO: Vision Outlooker for Visual Recognition (TPAMI 2022)

Paper: `VOLO: Vision Outlooker for Visual Recognition` - https://arxiv.org/abs/2106.13112
Official code: https://github.com/sail-sg/volo (Apache-2.0)

Stage 1 (stride 8) stacks Outlookers: outlook attention (``zoo.ops.outlook``: every location of a
stride-2 grid predicts a k^2 x k^2 attention map from its pooled input and mixes its k x k
neighbourhood of values, which is folded back to full resolution). A 2x2 conv then goes to
stride 16, a learned position embedding is added, and plain transformer stages follow; two class-
attention blocks (CaiT style) read the tokens into a class token. Every attention except the
outlook one runs on ``zoo.ops.attention``. The eval logits are the token-labelling combination
head(cls) + 0.5 * max over tokens of aux_head(tokens), as in the official code and timm.

The state_dict layout is the official one, which is also timm's, so both load unchanged.

Inputs: the position embedding is built for ``img_size`` (``fixed_input_size``), as in the official
code and timm; ``dynamic_img_size=True`` instead pads any input to a multiple of 16 and resizes the
position embedding (bicubic) to the token grid, for dense prediction.

Feature pyramid: VOLO's trunk has one map at stride 8 and then stays at stride 16, and its authors
released no detection/segmentation code. ``forward_intermediates`` / ``features_only`` therefore
give a parameter-free simple feature pyramid in the manner of plain-ViT backbones (ViTDet): stride
4 = the Outlooker output upsampled 2x (bilinear), stride 8 = the Outlooker output, stride 16 =
the last transformer stage, stride 32 = that map max-pooled 2x. No new weights: classification
checkpoints load strictly, and a detection neck (FPN) adds its own learned convs on top.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, to_2tuple, to_ntuple, trunc_normal_
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture
from zoo.ops.attention import attention
from zoo.ops.outlook import outlook_attention

from ._builder import build_zoo_model, check_image_input, register_zoo_model, zoo_default_cfgs

__all__ = ['VOLO']


class OutlookAttention(nn.Module):
    """Outlook attention on channels-last maps [B, H, W, C]; the unfold/attend/fold is ``zoo.ops.outlook``."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            kernel_size: int = 3,
            padding: int = 1,
            stride: int = 2,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.scale = (dim // num_heads) ** -0.5
        self.v = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.attn = nn.Linear(dim, kernel_size ** 4 * num_heads, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v(x)
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), self.stride, self.stride, ceil_mode=True).permute(0, 2, 3, 1)
        attn_drop = self.attn_drop.p if self.training else 0.
        x = outlook_attention(v, self.attn(pooled), self.num_heads, self.kernel_size, self.padding, self.stride,
                              self.scale, attn_drop=attn_drop)
        return self.proj(x)


class Outlooker(nn.Module):
    """x + outlook attention(LN(x)), then x + MLP(LN(x)); channels-last maps."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            kernel_size: int = 3,
            padding: int = 1,
            stride: int = 2,
            mlp_ratio: float = 3.,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=nn.LayerNorm,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm1 = norm_layer(dim, **dd)
        self.attn = OutlookAttention(dim, num_heads, kernel_size, padding, stride, qkv_bias, attn_drop, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class Attention(nn.Module):
    """Global multi-head self-attention over all tokens of a channels-last map [B, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0., device=None,
                 dtype=None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, device=device, dtype=dtype)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        q, k, v = self.qkv(x).reshape(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.training and self.attn_drop > 0:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop, scale=self.scale)
        else:
            x = attention(q, k, v, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, H, W, C))


class Transformer(nn.Module):
    """Pre-norm transformer block on channels-last maps."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=nn.LayerNorm,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm1 = norm_layer(dim, **dd)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class ClassAttention(nn.Module):
    """The class token (token 0) attends to every token; returns the new class embedding [B, 1, C]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0., device=None,
                 dtype=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, device=device, dtype=dtype)
        self.q = nn.Linear(dim, dim, bias=qkv_bias, device=device, dtype=dtype)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        k, v = self.kv(x).reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.q(x[:, :1]).reshape(B, 1, self.num_heads, self.head_dim).transpose(1, 2)
        if self.training and self.attn_drop > 0:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop, scale=self.scale)
        else:
            x = attention(q, k, v, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, 1, C))


class ClassBlock(nn.Module):
    """Class-attention block: updates only the class token; the patch tokens pass through."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=nn.LayerNorm,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm1 = norm_layer(dim, **dd)
        self.attn = ClassAttention(dim, num_heads, qkv_bias, attn_drop, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls_embed = x[:, :1] + self.drop_path1(self.attn(self.norm1(x)))
        cls_embed = cls_embed + self.drop_path2(self.mlp(self.norm2(cls_embed)))
        return torch.cat([cls_embed, x[:, 1:]], dim=1)


class PatchEmbed(nn.Module):
    """Conv stem: 7x7/2 + two 3x3 (each BN + ReLU) then a 4x4/4 projection: stride 8 in all."""

    def __init__(self, in_chans: int = 3, hidden_dim: int = 64, embed_dim: int = 384, patch_size: int = 8,
                 device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.in_chans = in_chans
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, hidden_dim, 7, stride=2, padding=3, bias=False, **dd),
            nn.BatchNorm2d(hidden_dim, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride=1, padding=1, bias=False, **dd),
            nn.BatchNorm2d(hidden_dim, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride=1, padding=1, bias=False, **dd),
            nn.BatchNorm2d(hidden_dim, **dd),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Conv2d(hidden_dim, embed_dim, patch_size // 2, stride=patch_size // 2, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x))


class Downsample(nn.Module):
    """2x2 stride-2 conv between the Outlooker and transformer stages (channels-last in and out)."""

    def __init__(self, in_dim: int, out_dim: int, patch_size: int = 2, device=None, dtype=None):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, patch_size, stride=patch_size, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _rand_bbox(H: int, W: int, lam: float, scale: int = 1) -> Tuple[int, int, int, int]:
    """A random box covering a (1 - lam) fraction of an (H/scale) x (W/scale) grid (CutMix style)."""
    H, W = H // scale, W // scale
    cut = math.sqrt(1. - lam)
    ch, cw = int(H * cut), int(W * cut)
    cy, cx = int(torch.randint(H, ())), int(torch.randint(W, ()))
    return (max(cy - ch // 2, 0), max(cx - cw // 2, 0), min(cy + ch // 2, H), min(cx + cw // 2, W))


class VOLO(nn.Module):
    """VOLO: Outlooker stage at stride 8, transformer stages at stride 16, class attention, token-labelling head.

    Args:
        layers: blocks per stage (stage 0: Outlookers).
        img_size: input size the position embedding is built for.
        in_chans: input channels.
        num_classes: classifier outputs (0: none).
        global_pool: 'token' (class token, default), 'avg' or '' (all tokens).
        patch_size: stem stride (8).
        stem_hidden_dim: stem conv width (64; 128 for D5).
        embed_dims, num_heads: per stage.
        downsamples: a 2x2 downsample after the stage.
        outlook_attention: whether the stage is made of Outlookers.
        mlp_ratio: MLP ratio (one or per stage).
        qkv_bias: bias on q/k/v projections.
        drop_rate, pos_drop_rate, attn_drop_rate, drop_path_rate: regularisation (the Outlooker stage has no drop
            path, as in the official code).
        post_layers: class-attention blocks ('ca'); None for none.
        use_aux_head: token-labelling head on the patch tokens.
        use_mix_token: token-labelling MixToken in `forward_train`.
        pooling_scale: 2 (stride 8 -> 16).
        outlook_kernel_size, outlook_padding, outlook_stride: the outlook attention window (3, 1, 2 in every model).
        dynamic_img_size: accept any input size (padded to 16, position embedding resized) instead of ``img_size``.
    """

    def __init__(
            self,
            layers: Sequence[int],
            img_size: Union[int, Tuple[int, int]] = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'token',
            patch_size: int = 8,
            stem_hidden_dim: int = 64,
            embed_dims: Sequence[int] = (192, 384, 384, 384),
            num_heads: Sequence[int] = (6, 12, 12, 12),
            downsamples: Sequence[bool] = (True, False, False, False),
            outlook_attention: Sequence[bool] = (True, False, False, False),
            mlp_ratio: Union[float, Sequence[float]] = 3.,
            qkv_bias: bool = False,
            drop_rate: float = 0.,
            pos_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_layer=nn.LayerNorm,
            post_layers: Optional[Sequence[str]] = ('ca', 'ca'),
            use_aux_head: bool = True,
            use_mix_token: bool = False,
            pooling_scale: int = 2,
            outlook_kernel_size: int = 3,
            outlook_padding: int = 1,
            outlook_stride: int = 2,
            dynamic_img_size: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if global_pool not in ('', 'avg', 'token'):
            raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
        if use_mix_token and global_pool != 'token':
            raise ValueError("use_mix_token needs global_pool='token'")
        num_stages = len(layers)
        mlp_ratio = to_ntuple(num_stages)(mlp_ratio)
        self.img_size = to_2tuple(img_size)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.mix_token = use_mix_token
        self.pooling_scale = pooling_scale
        self.patch_size = patch_size
        self.dynamic_img_size = dynamic_img_size
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, stem_hidden_dim, embed_dims[0], patch_size, **dd)
        grid = (self.img_size[0] // patch_size // pooling_scale, self.img_size[1] // patch_size // pooling_scale)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0], grid[1], embed_dims[-1], **dd))
        self.pos_drop = nn.Dropout(pos_drop_rate)

        network = []
        self.stage_ends = []
        stage_chs = []
        total = sum(layers)
        for i in range(num_stages):
            common = dict(mlp_ratio=mlp_ratio[i], qkv_bias=qkv_bias, attn_drop=attn_drop_rate, norm_layer=norm_layer,
                          **dd)
            if outlook_attention[i]:
                blocks = [
                    Outlooker(embed_dims[i], num_heads[i], outlook_kernel_size, outlook_padding, outlook_stride,
                              **common)
                    for _ in range(layers[i])
                ]
            else:
                first = sum(layers[:i])
                blocks = [
                    Transformer(embed_dims[i], num_heads[i], drop_path=drop_path_rate * (first + j) / (total - 1),
                                **common)
                    for j in range(layers[i])
                ]
            self.stage_ends.append(len(network))
            stage_chs.append(embed_dims[i])
            network.append(nn.Sequential(*blocks))
            if downsamples[i]:
                network.append(Downsample(embed_dims[i], embed_dims[i + 1], 2, **dd))
        self.network = nn.ModuleList(network)

        # the 4-level pyramid (see the module docstring): (network index tapped, resampling)
        self._pyramid = ((0, 'up'), (0, ''), (len(network) - 1, ''), (len(network) - 1, 'down'))
        red8 = patch_size
        red16 = patch_size * pooling_scale
        self.feature_info = [
            dict(num_chs=stage_chs[0], reduction=red8 // 2, module='network.0'),
            dict(num_chs=stage_chs[0], reduction=red8, module='network.0'),
            dict(num_chs=stage_chs[-1], reduction=red16, module=f'network.{len(network) - 1}'),
            dict(num_chs=stage_chs[-1], reduction=red16 * 2, module=f'network.{len(network) - 1}'),
        ]

        self.post_network = None
        self.cls_token = None
        if post_layers is not None:
            for kind in post_layers:
                if kind != 'ca':
                    raise ValueError(f"post layer {kind!r} is not supported (only 'ca', class attention)")
            self.post_network = nn.ModuleList([
                ClassBlock(embed_dims[-1], num_heads[-1], mlp_ratio=mlp_ratio[-1], qkv_bias=qkv_bias,
                           attn_drop=attn_drop_rate, norm_layer=norm_layer, **dd)
                for _ in post_layers
            ])
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[-1], **dd))

        self.use_aux_head = use_aux_head
        self.aux_head = nn.Linear(self.num_features, num_classes, **dd) if use_aux_head and num_classes > 0 else None
        self.norm = norm_layer(self.num_features, **dd)
        self._token_grid = (grid[0], grid[1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=.02)
        trunc_normal_(self.pos_embed, std=.02)
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {'pos_embed', 'cls_token'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r'^cls_token|pos_embed|patch_embed',
            blocks=[(r'^network\.(\d+)\.(\d+)', None), (r'^network\.(\d+)', (0,))],
            blocks2=[(r'^cls_token', (0,)), (r'^post_network\.(\d+)', None), (r'^norm', (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        p = next(self.parameters())
        dd = dict(device=p.device, dtype=p.dtype)
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ('', 'avg', 'token'):
                raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
            if global_pool == 'token' and self.cls_token is None:
                raise ValueError("global_pool='token' needs the class token (pruned here)")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.aux_head = nn.Linear(self.num_features, num_classes, **dd) if self.use_aux_head and num_classes > 0 \
            else None

    # ------------------------------------------------------------------------------------------
    # forward pieces

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> stride-8 channels-last map, checking (or, with dynamic_img_size, padding) the input."""
        check_image_input(x, self.in_chans, 'VOLO', weight=self.patch_embed.conv[0].weight)
        H, W = x.shape[-2:]
        if self.dynamic_img_size:  # padded to a multiple of the stride-16 grid: any size >= 1 keeps one token
            mult = self.patch_size * self.pooling_scale
            x = F.pad(x, (0, (-W) % mult, 0, (-H) % mult))
        elif (H, W) != self.img_size:
            raise ValueError(
                f'VOLO is built for {self.img_size[0]}x{self.img_size[1]} inputs (its position embedding), '
                f'got {H}x{W}; '
                f'build with img_size=({H}, {W}) or dynamic_img_size=True')
        return self.patch_embed(x).permute(0, 2, 3, 1)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.pos_embed
        # under a dynamic-size export the resize stays in the graph (an exact identity at the built size)
        if (self.dynamic_img_size and _in_graph_capture()) or pos.shape[1:3] != x.shape[1:3]:
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode='bicubic', align_corners=False)
            pos = pos.permute(0, 2, 3, 1)
        return self.pos_drop(x + pos)

    def _run_block(self, idx: int, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if idx == 2 and self.pos_embed is not None:  # after the Outlooker stage and its downsample
            x = self._pos_embed(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(block, x)
        return block(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Stride-8 channels-last map -> stride-16 tokens [B, N, C] (timm's name)."""
        x = self._network(x)
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def forward_cls(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.post_network:
            x = checkpoint(block, x) if self.grad_checkpointing and not torch.jit.is_scripting() else block(x)
        return x

    def _finish_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Stride-16 map -> tokens (+ class token) -> final norm: the `forward_features` output."""
        self._token_grid = tuple(x.shape[1:3])  # lets an unpooled head give the tokens back as a map
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[-1])  # no -1: the batch may be empty
        if self.post_network is not None:
            x = self.forward_cls(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normed tokens [B, 1 + N, C] (class token first), as timm's VOLO."""
        return self._finish_tokens(self._network(self._embed(x)))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pool == 'avg':
            return x.mean(dim=1)
        if self.global_pool == 'token':
            return x[:, 0]
        return self._tokens_to_map(x)

    def _tokens_to_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled output: the patch tokens as an NCHW map (the class token, if any, is dropped).

        timm's VOLO returns the raw token sequence here; a map is what every other unpooled zoo backbone gives.
        """
        gh, gw = self._token_grid
        if self.cls_token is not None and x.shape[1] == gh * gw + 1:
            x = x[:, 1:]
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], gh, gw)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        out = self.head_drop(self._pool(x))
        if pre_logits:
            return out
        out = self.head(out)
        if self.aux_head is not None and self.global_pool:
            # token labelling: the strongest patch-token prediction per class joins the pooled prediction
            out = out + 0.5 * self.aux_head(self.head_drop(x)[:, 1:]).max(1)[0]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: torch.Tensor):
        """Token-labelling training forward (the official `return_dense` path).

        In training with an aux head returns (class logits, per-token logits [B, N, classes], MixToken box
        (y1, x1, y2, x2) on the token grid); with MixToken the token logits are un-mixed, so they line up with the
        dense labels of the un-flipped image. Otherwise returns what `forward` returns.
        """
        x = self._embed(x)
        box = (0, 0, 0, 0)
        if self.mix_token and self.training:
            lam = float(torch.distributions.Beta(1.0, 1.0).sample())
            s = self.pooling_scale
            box = _rand_bbox(x.shape[1], x.shape[2], lam, scale=s)
            y1, x1, y2, x2 = (c * s for c in box)
            mixed = x.clone()
            mixed[:, y1:y2, x1:x2] = x.flip(0)[:, y1:y2, x1:x2]
            x = mixed
        x = self._network(x)
        grid_h, grid_w = x.shape[1:3]
        x = self._finish_tokens(x)
        if self.aux_head is None or not self.training:
            return self.forward_head(x)
        cls_logits = self.head(self.head_drop(self._pool(x)))
        aux = self.aux_head(x[:, 1:])
        if self.mix_token:
            aux = aux.reshape(aux.shape[0], grid_h, grid_w, -1)
            unmixed = aux.clone()
            y1, x1, y2, x2 = box
            unmixed[:, y1:y2, x1:x2] = aux.flip(0)[:, y1:y2, x1:x2]
            aux = unmixed.reshape(aux.shape[0], grid_h * grid_w, -1)
        return cls_logits, aux, box

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        for idx, block in enumerate(self.network):
            x = self._run_block(idx, block, x)
        return x

    # ------------------------------------------------------------------------------------------
    # features

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The 4-level pyramid (strides 4, 8, 16, 32; see the module docstring) as NCHW maps.

        ``norm`` applies the final LayerNorm to the stride-16/32 levels. The final output (unless
        ``intermediates_only``) is `forward_features`'s token tensor.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f'output_fmt {output_fmt!r} is not supported; VOLO gives NCHW maps')
        take_indices, max_index = feature_take_indices(len(self._pyramid), indices)
        last_block = self._pyramid[max_index][0]
        network = self.network if torch.jit.is_scripting() or not stop_early else self.network[:last_block + 1]
        taps = {}
        in_h, in_w = x.shape[-2:]
        x = self._embed(x)
        idx = 0
        for idx, block in enumerate(network):
            x = self._run_block(idx, block, x)
            taps[idx] = x
        intermediates = []
        for i in take_indices:
            src, resample = self._pyramid[i]
            feat = taps[src]
            if norm and src >= 2:
                feat = self.norm(feat)
            feat = feat.permute(0, 3, 1, 2)
            if resample == 'up':
                feat = F.interpolate(feat, scale_factor=2., mode='bilinear', align_corners=False)
            elif resample == 'down':
                feat = F.max_pool2d(feat, 2, 2, ceil_mode=True)
            if self.dynamic_img_size:  # crop the internal padding back off
                red = self.feature_info[i]['reduction']
                feat = feat[..., :(in_h + red - 1) // red, :(in_w + red - 1) // red]
            intermediates.append(feat)
        if intermediates_only:
            return intermediates
        if idx == len(self.network) - 1:
            x = self._finish_tokens(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ):
        take_indices, max_index = feature_take_indices(len(self._pyramid), indices)
        last_block = self._pyramid[max_index][0]
        prune_end = last_block < len(self.network) - 1
        self.network = self.network[:last_block + 1]
        if last_block < 2:
            # neither the position embedding nor the final norm (sized for the last stage) is used any more
            self.pos_embed = None
            prune_norm = True
        if prune_norm:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.post_network = None
            self.cls_token = None
            self.use_aux_head = False
            self.reset_classifier(0, '')
        return take_indices


def checkpoint_filter_fn(state_dict: dict, model: nn.Module = None) -> dict:
    """Official sail-sg/volo checkpoints -> this layout. The layouts are identical (timm's too), so this only
    unwraps ``{'state_dict' | 'state_dict_ema' | 'model': ...}`` and strips a DataParallel ``module.`` prefix."""
    for wrapper in ('state_dict_ema', 'state_dict', 'model_ema', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    return {k.removeprefix('module.'): v for k, v in state_dict.items()}


def _create_volo(variant: str, pretrained: bool = False, **kwargs) -> VOLO:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    if kwargs.get('dynamic_img_size'):
        # any input size works: say so in the cfg (tools such as ONNX export with dynamic H / W read it)
        overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
        overlay.setdefault('fixed_input_size', False)
        kwargs['pretrained_cfg_overlay'] = overlay
    return build_zoo_model(
        VOLO, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs):
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': None,
        'crop_pct': .96, 'interpolation': 'bicubic', 'fixed_input_size': True,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.conv.0', 'classifier': ('head', 'aux_head'),
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:2106.13112', 'origin_url': 'https://github.com/sail-sg/volo',
        **kwargs,
    }


_URL = 'https://github.com/sail-sg/volo/releases/download/volo_1/'


def _volo_cfg(name: str, file: str, **kwargs):
    # timm's converted copy on the HF hub is tried first; the official release asset is the fallback
    return _cfg(url=_URL + file, hf_hub_id=f'timm/{name}.sail_in1k', **kwargs)


default_cfgs = zoo_default_cfgs({
    'volo_d1_224.sail_in1k': _volo_cfg('volo_d1_224', 'd1_224_84.2.pth.tar'),
    'volo_d1_384.sail_in1k': _volo_cfg('volo_d1_384', 'd1_384_85.2.pth.tar', crop_pct=1.0, input_size=(3, 384, 384)),
    'volo_d2_224.sail_in1k': _volo_cfg('volo_d2_224', 'd2_224_85.2.pth.tar'),
    'volo_d2_384.sail_in1k': _volo_cfg('volo_d2_384', 'd2_384_86.0.pth.tar', crop_pct=1.0, input_size=(3, 384, 384)),
    'volo_d3_224.sail_in1k': _volo_cfg('volo_d3_224', 'd3_224_85.4.pth.tar'),
    'volo_d3_448.sail_in1k': _volo_cfg('volo_d3_448', 'd3_448_86.3.pth.tar', crop_pct=1.0, input_size=(3, 448, 448)),
    'volo_d4_224.sail_in1k': _volo_cfg('volo_d4_224', 'd4_224_85.7.pth.tar'),
    'volo_d4_448.sail_in1k': _volo_cfg('volo_d4_448', 'd4_448_86.79.pth.tar', crop_pct=1.15,
                                       input_size=(3, 448, 448)),
    'volo_d5_224.sail_in1k': _volo_cfg('volo_d5_224', 'd5_224_86.10.pth.tar'),
    'volo_d5_448.sail_in1k': _volo_cfg('volo_d5_448', 'd5_448_87.0.pth.tar', crop_pct=1.15,
                                       input_size=(3, 448, 448)),
    'volo_d5_512.sail_in1k': _volo_cfg('volo_d5_512', 'd5_512_87.07.pth.tar', crop_pct=1.15,
                                       input_size=(3, 512, 512)),
})

_D1 = dict(layers=(4, 4, 8, 2), embed_dims=(192, 384, 384, 384), num_heads=(6, 12, 12, 12))
_D2 = dict(layers=(6, 4, 10, 4), embed_dims=(256, 512, 512, 512), num_heads=(8, 16, 16, 16))
_D3 = dict(layers=(8, 8, 16, 4), embed_dims=(256, 512, 512, 512), num_heads=(8, 16, 16, 16))
_D4 = dict(layers=(8, 8, 16, 4), embed_dims=(384, 768, 768, 768), num_heads=(12, 16, 16, 16))
_D5 = dict(layers=(12, 12, 20, 4), embed_dims=(384, 768, 768, 768), num_heads=(12, 16, 16, 16), mlp_ratio=4,
           stem_hidden_dim=128)


@register_zoo_model
def volo_d1_224(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D1 @224: 26.6M params, 84.2 top-1."""
    return _create_volo('volo_d1_224', pretrained, **dict(_D1, **kwargs))


@register_zoo_model
def volo_d1_384(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D1 @384: 85.2 top-1."""
    return _create_volo('volo_d1_384', pretrained, **dict(_D1, **kwargs))


@register_zoo_model
def volo_d2_224(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D2 @224: 58.7M params, 85.2 top-1."""
    return _create_volo('volo_d2_224', pretrained, **dict(_D2, **kwargs))


@register_zoo_model
def volo_d2_384(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D2 @384: 86.0 top-1."""
    return _create_volo('volo_d2_384', pretrained, **dict(_D2, **kwargs))


@register_zoo_model
def volo_d3_224(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D3 @224: 86.3M params, 85.4 top-1."""
    return _create_volo('volo_d3_224', pretrained, **dict(_D3, **kwargs))


@register_zoo_model
def volo_d3_448(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D3 @448: 86.3 top-1."""
    return _create_volo('volo_d3_448', pretrained, **dict(_D3, **kwargs))


@register_zoo_model
def volo_d4_224(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D4 @224: 193.0M params, 85.7 top-1."""
    return _create_volo('volo_d4_224', pretrained, **dict(_D4, **kwargs))


@register_zoo_model
def volo_d4_448(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D4 @448: 86.8 top-1."""
    return _create_volo('volo_d4_448', pretrained, **dict(_D4, **kwargs))


@register_zoo_model
def volo_d5_224(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D5 @224: 295.5M params, 86.1 top-1."""
    return _create_volo('volo_d5_224', pretrained, **dict(_D5, **kwargs))


@register_zoo_model
def volo_d5_448(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D5 @448: 87.0 top-1."""
    return _create_volo('volo_d5_448', pretrained, **dict(_D5, **kwargs))


@register_zoo_model
def volo_d5_512(pretrained: bool = False, **kwargs) -> VOLO:
    """VOLO-D5 @512: 87.1 top-1."""
    return _create_volo('volo_d5_512', pretrained, **dict(_D5, **kwargs))
