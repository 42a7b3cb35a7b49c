"""``zoo sr`` / ``tools/super_resolve.py``: upscale images with a zoo super-resolution model (CATANet).

    zoo sr IMAGE... [--model catanet_x4] [--checkpoint FILE] [--tile N] [--tile-overlap N] [-o DIR] [--overwrite]
    zoo sr HR_IMAGE... --eval [--model catanet_x4] [--checkpoint FILE]

Each result is written to ``-o DIR`` (default ``output/sr``) as ``<stem>_x<scale>.png``; an existing file is
never replaced without ``--overwrite`` (checked for every image before the model is loaded).

* Tiled inference (``--tile N``, LR pixels): the LR image is cut into overlapping N x N tiles, each is upscaled and
  the tiles are blended with linear ramps over the overlap, so a 4K output fits in memory.
* ``--eval``: each IMAGE is a high-resolution reference; it is cropped to a multiple of the scale, bicubic
  down-scaled (PIL), super-resolved and compared with PSNR / SSIM on the Y channel (ITU-R BT.601, 8-bit rounding),
  with ``scale`` border pixels cropped — the usual Set5 / Set14 protocol (BasicSR's ``calculate_psnr``/``ssim``).
  Note: papers down-scale with MATLAB's ``imresize``; PIL's bicubic differs slightly, so expect numbers a few
  hundredths of a dB from the published ones.
* ``--model bicubic`` is the plain bicubic baseline (no network), useful as a reference point.
"""
import argparse
import math
import os
import sys
import warnings
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['main', 'upscale_tiled', 'psnr_y', 'ssim_y', 'rgb_to_y', 'load_sr_model']


def _scale_of(name: str) -> int:
    tail = name.rsplit('_x', 1)
    if len(tail) != 2 or not tail[1].isdigit():
        raise ValueError(f'cannot read the scale from model name {name!r} (expected ..._x2/_x3/_x4)')
    return int(tail[1])


def resolve_sr_model(name: str) -> str:
    """``bicubic[_x<s>]`` or the timm name of a zoo super-resolution model; a clear error for anything else."""
    if name.startswith('bicubic'):
        return name
    import zoo
    from zoo.models._builder import family_of
    resolved = zoo.resolve_model_name(name)  # ValueError naming similar models
    if family_of(resolved) != 'catanet':
        sr_models = ', '.join(n for n in zoo.list_models() if family_of(n) == 'catanet')
        raise ValueError(f'--model {name}: not a super-resolution model; one of {sr_models} or bicubic_x<s>')
    return resolved


def load_sr_model(name: str, checkpoint: Optional[str] = None, device: str = 'cpu') -> Tuple[Callable, int]:
    """A callable LR [B,3,h,w] in [0,1] -> SR [B,3,s*h,s*w], and its scale s."""
    if name.startswith('bicubic'):
        scale = _scale_of(name) if '_x' in name else 4
        return (lambda x: F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)), scale
    import timm

    name = resolve_sr_model(name)
    kwargs = {}
    if checkpoint:
        kwargs = dict(pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint))
    else:
        warnings.warn(f'{name}: no --checkpoint given, the network has RANDOM weights (output is meaningless)')
    model = timm.create_model(name, **kwargs).eval().to(device)
    if getattr(model, 'is_classifier', True):
        raise ValueError(f'{name} is not a super-resolution model')
    return model, model.upscale


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blending weights of one tile: linear ramps over the overlap, except on the image border."""
    w = torch.ones(length)
    if overlap > 0:
        ramp = (torch.arange(overlap) + 0.5) / overlap
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def _tile_starts(size: int, tile: int, overlap: int) -> List[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


@torch.no_grad()
def upscale_tiled(model: Callable, lr: torch.Tensor, scale: int, tile: int = 0, overlap: int = 16) -> torch.Tensor:
    """Super-resolve lr [B,3,H,W]; with ``tile`` > 0, tile by tile (overlap in LR pixels) with linear blending.

    Only one tile's SR output is alive at a time besides the accumulators, so the memory of the model's forward
    is bounded by the tile size.
    """
    B, C, H, W = lr.shape
    if tile <= 0 or (H <= tile and W <= tile):
        return model(lr)
    if overlap >= tile:
        raise ValueError(f'--tile-overlap ({overlap}) must be smaller than --tile ({tile})')
    out = torch.zeros(B, C, H * scale, W * scale, dtype=lr.dtype, device=lr.device)
    weight = torch.zeros(1, 1, H * scale, W * scale, dtype=lr.dtype, device=lr.device)
    ys, xs = _tile_starts(H, tile, overlap), _tile_starts(W, tile, overlap)
    for y in ys:
        for x in xs:
            th, tw = min(tile, H - y), min(tile, W - x)
            sr = model(lr[:, :, y:y + th, x:x + tw])
            wy = _ramp(th * scale, overlap * scale, y == ys[0], y == ys[-1])
            wx = _ramp(tw * scale, overlap * scale, x == xs[0], x == xs[-1])
            w = (wy[:, None] * wx[None, :]).to(lr)
            out[:, :, y * scale:(y + th) * scale, x * scale:(x + tw) * scale] += sr * w
            weight[:, :, y * scale:(y + th) * scale, x * scale:(x + tw) * scale] += w
    return out / weight


# ----------------------------------------------------------------------------------------------
# metrics (BasicSR conventions: 8-bit images, Y of BT.601 YCbCr, crop_border = scale)

def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB in [0, 255] -> [..., 1, H, W] Y in [16, 235] (BT.601, as MATLAB's rgb2ycbcr)."""
    r, g, b = img.unbind(-3)
    return (16. + (65.481 * r + 128.553 * g + 24.966 * b) / 255.).unsqueeze(-3)


def _to_8bit(img: torch.Tensor) -> torch.Tensor:
    return (img.clamp(0, 1) * 255.).round().double()


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> float:
    """PSNR (dB) on the Y channel of two [3, H, W] images in [0, 1]."""
    a, b = rgb_to_y(_to_8bit(sr)), rgb_to_y(_to_8bit(hr))
    if crop_border:
        a, b = a[..., crop_border:-crop_border, crop_border:-crop_border], b[..., crop_border:-crop_border,
                                                                              crop_border:-crop_border]
    mse = (a - b).square().mean().item()
    return float('inf') if mse == 0 else 10. * math.log10(255. ** 2 / mse)


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> float:
    """SSIM on the Y channel (11x11 Gaussian, sigma 1.5, 'valid' window, constants for 8-bit data)."""
    a, b = rgb_to_y(_to_8bit(sr))[None], rgb_to_y(_to_8bit(hr))[None]
    if crop_border:
        a, b = a[..., crop_border:-crop_border, crop_border:-crop_border], b[..., crop_border:-crop_border,
                                                                              crop_border:-crop_border]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5).square() / (2 * 1.5 ** 2))
    g = g / g.sum()
    gh, gv = g.view(1, 1, 1, 11), g.view(1, 1, 11, 1)

    def blur(t):  # separable 11x11 Gaussian, 'valid'
        return F.conv2d(F.conv2d(t, gh), gv)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim.mean().item()


# ----------------------------------------------------------------------------------------------
# image I/O

def load_image(path: str) -> torch.Tensor:
    from PIL import Image

    from .data import pil_to_rgb
    with Image.open(path) as im:
        arr = pil_to_rgb(im).astype(np.float32) / 255.
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def save_image(img: torch.Tensor, path: str):
    """An 8-bit PNG (or the format of the suffix), written atomically."""
    import io

    from PIL import Image

    from .train import atomic_write
    arr = (img.clamp(0, 1) * 255.).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format=Image.registered_extensions().get(
        os.path.splitext(path)[1].lower(), 'PNG'))
    atomic_write(path, buffer.getvalue())


def bicubic_downscale(hr: torch.Tensor, scale: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mod-crop hr [3,H,W] to a multiple of scale and down-scale it with PIL's (antialiased) bicubic."""
    from PIL import Image
    H, W = hr.shape[-2:]
    hr = hr[:, :H - H % scale, :W - W % scale]
    arr = (hr.clamp(0, 1) * 255.).round().byte().permute(1, 2, 0).numpy()
    im = Image.fromarray(arr).resize((arr.shape[1] // scale, arr.shape[0] // scale), Image.BICUBIC)
    lr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.).permute(2, 0, 1).contiguous()
    return lr, torch.from_numpy(arr.astype(np.float32) / 255.).permute(2, 0, 1)


# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .errors import ArgumentParser
    p = ArgumentParser(prog='zoo sr', description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('images', nargs='+', help='input images (LR; with --eval, HR references)')
    p.add_argument('--model', default='catanet_x4', help='catanet_x2|x3|x4 (or zoo_ names), or bicubic_x<s>')
    p.add_argument('--checkpoint', default=None, help='weights: official .pth or zoo safetensors')
    p.add_argument('--tile', type=int, default=0, help='LR tile size for tiled inference (0: whole image)')
    p.add_argument('--tile-overlap', type=int, default=16, help='overlap between tiles, LR pixels')
    p.add_argument('-o', '--output-dir', default=os.path.join('output', 'sr'), help='where the SR images are written')
    p.add_argument('--overwrite', action='store_true', help='replace existing output files')
    p.add_argument('--eval', action='store_true', help='treat inputs as HR references and report PSNR/SSIM (Y)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return p


def output_paths(images: List[str], output_dir: str, scale: int) -> List[str]:
    return [os.path.join(output_dir, f'{os.path.splitext(os.path.basename(p))[0]}_x{scale}.png') for p in images]


def check_args(args: argparse.Namespace) -> int:
    """Everything checkable before the model is loaded: inputs, model name, flags, outputs; returns the scale."""
    from .errors import UserError
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        raise UserError(f'no such image: {", ".join(missing)}')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise UserError(f'--checkpoint {args.checkpoint!r}: no such file')
    if args.tile < 0 or args.tile_overlap < 0 or (args.tile and args.tile_overlap >= args.tile):
        raise UserError(f'--tile {args.tile} / --tile-overlap {args.tile_overlap}: need tile >= 0 and, when tiling, '
                        '0 <= overlap < tile')
    name = resolve_sr_model(args.model)
    scale = (_scale_of(name) if '_x' in name else 4) if name.startswith('bicubic') else _scale_of(name)
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise UserError(f'--output-dir {args.output_dir!r} is a file')
    outs = output_paths(args.images, args.output_dir, scale)
    if len(set(outs)) != len(outs):
        raise UserError('two inputs have the same file name and would write the same output; rename one')
    existing = [p for p in outs if os.path.exists(p)]
    if existing and not args.overwrite:
        raise UserError(f'{", ".join(existing)} exists; pass --overwrite to replace, or another --output-dir')
    return scale


def run(args: argparse.Namespace) -> int:
    check_args(args)
    model, scale = load_sr_model(args.model, args.checkpoint, args.device)
    os.makedirs(args.output_dir, exist_ok=True)
    scores = []
    for path, out_path in zip(args.images, output_paths(args.images, args.output_dir, scale)):
        img = load_image(path)
        if args.eval:
            lr, hr = bicubic_downscale(img, scale)
        else:
            lr, hr = img, None
        sr = upscale_tiled(model, lr[None].to(args.device), scale, args.tile, args.tile_overlap)[0].float().cpu()
        save_image(sr, out_path)
        if hr is not None:
            p, s = psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)
            scores.append((p, s))
            print(f'{path}: PSNR(Y) {p:.2f} dB  SSIM(Y) {s:.4f}  -> {out_path}')
        else:
            print(f'{path}: {tuple(lr.shape[-2:])} -> {tuple(sr.shape[-2:])}  -> {out_path}')
    if scores:
        print(f'mean over {len(scores)} images: PSNR(Y) {np.mean([p for p, _ in scores]):.2f} dB  '
              f'SSIM(Y) {np.mean([s for _, s in scores]):.4f}')
    return 0


def main(argv=None) -> int:
    from .errors import run_command
    args = build_parser().parse_args(argv)
    return run_command('zoo sr', lambda: run(args), verbose=args.verbose)


if __name__ == '__main__':
    sys.exit(main())
