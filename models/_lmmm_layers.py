"""Small layers shared by the two LMMMEng families (OverLoCK and A2Mamba): their common stem,
the depthwise-1x1 LayerScale (weight (C,1,1,1) plus bias), and the conv projection head
(1x1 conv -> BN -> SiLU -> global pool -> 1x1 classifier)."""
import torch
import torch.nn as nn
from timm.layers import SelectAdaptivePool2d

__all__ = ['conv_stem', 'DWLayerScale', 'ProjectionHead']


def conv_stem(in_chans: int, embed_dim: int) -> nn.Sequential:
    """Four 3x3 convs (two with stride 2) with BN, GELU between: 1/4 resolution."""
    mid = embed_dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, mid, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(mid), nn.GELU(),
        nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.GELU(),
        nn.Conv2d(mid, embed_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(embed_dim), nn.GELU(),
        nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False), nn.BatchNorm2d(embed_dim),
    )


class DWLayerScale(nn.Module):
    """Per-channel scale and shift stored as a depthwise 1x1 conv (the official checkpoints' layout)."""

    def __init__(self, dim: int, init_value: float = 1e-5, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim, 1, 1, 1), float(init_value)))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        out = x * self.weight.view(1, -1, 1, 1)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class ProjectionHead(nn.Module):
    """1x1 conv -> BN -> SiLU (the 'pre-logits' projection), global pool, then a 1x1-conv classifier.

    ``num_classes=0`` drops the classifier; ``global_pool=''`` makes the head an identity on the unpooled
    feature map (timm's convention for ``reset_classifier(0, '')``: a 4-D map with ``num_features`` channels).
    """

    def __init__(self, in_chs: int, hidden: int, num_classes: int, global_pool: str = 'avg',
                 drop_rate: float = 0., proj_bias: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, hidden, 1, bias=proj_bias)
        self.norm = nn.BatchNorm2d(hidden)
        self.act = nn.SiLU()
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.drop = nn.Dropout(drop_rate)
        self.hidden = hidden
        self.fc = nn.Conv2d(hidden, num_classes, 1) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int, global_pool=None):
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.fc = nn.Conv2d(self.hidden, num_classes, 1) if num_classes > 0 else nn.Identity()

    def forward(self, x, pre_logits: bool = False):
        if self.global_pool.is_identity():
            return x if isinstance(self.fc, nn.Identity) else self.fc(self.act(self.norm(self.proj(x))))
        x = self.global_pool(self.act(self.norm(self.proj(x))))
        x = self.drop(x)
        if not pre_logits:
            x = self.fc(x)
        return x.flatten(1)
