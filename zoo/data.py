"""Datasets, albumentations pipelines and loaders shared by ``zoo train`` and ``zoo validate``.

Two sources:

* ``digits`` (the default): scikit-learn's bundled handwritten digits (1,797 real 8x8 grey images,
  10 classes), turned into RGB uint8 images and resized up by the transforms. A fixed stratified
  split (every 5th image of each class, in file order, is validation) needs no download and never
  changes between runs or machines.
* an ImageFolder root ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg`` (the ImageNet layout).
  A class folder without images is refused (it would silently become a class no image teaches), except in
  a validation split whose classes come from the training set (a val folder may lack some classes).
  16-bit images (PNG/TIFF, grey or RGB) are scaled to 8 bits (value * 255 / 65535), not clipped.

Every sample is augmented with its own seed, derived from (run seed, epoch, index) and handed to the
dataset by :class:`ShardedSampler`, so the augmentation of an image never depends on the worker that
loads it, on the number of processes, or on where a resumed run restarted.
"""
import os
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
VAL_SPLIT_NAMES = ('val', 'validation')
DIGITS = 'digits'


class DataError(ValueError):
    """A data directory or image that cannot be used."""


# ---------------------------------------------------------------------------------------------
# datasets

class DigitsDataset(Dataset):
    """scikit-learn's 8x8 digits as HxWx3 uint8 images with a fixed 80/20 stratified split."""

    num_classes = 10

    def __init__(self, split: str = 'train', transform=None):
        from sklearn.datasets import load_digits
        if split not in ('train', 'val'):
            raise DataError(f"digits split must be 'train' or 'val', got {split!r}")
        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values are 0..16
        targets = digits.target.astype(np.int64)
        is_val = np.zeros(len(targets), dtype=bool)
        for c in range(self.num_classes):
            is_val[np.flatnonzero(targets == c)[::5]] = True
        keep = is_val if split == 'val' else ~is_val
        self.images = np.repeat(images[keep][..., None], 3, axis=-1)
        self.targets = targets[keep]
        self.classes = [str(c) for c in range(self.num_classes)]
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, item):
        index, seed = _unpack(item)
        return _apply(self.transform, self.images[index], seed), int(self.targets[index])


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` decoded with PIL; unreadable images are reported, not fatal (unless strict)."""

    def __init__(self, root: str, transform=None, strict: bool = False, class_names: Optional[List[str]] = None):
        if not os.path.isdir(root):
            raise DataError(f'data directory {root!r} does not exist')
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith('.'))
        if class_names is not None:
            unknown = sorted(set(classes) - set(class_names))
            if unknown:
                raise DataError(f'{root!r} has classes missing from the training set: {unknown[:10]}')
            classes = list(class_names)
        if not classes:
            raise DataError(f'data directory {root!r} has no class sub-folders (expected {root}/<class>/<image>)')
        samples, empty = [], []
        for label, name in enumerate(classes):
            folder = os.path.join(root, name)
            if not os.path.isdir(folder):
                continue
            found = []
            for dirpath, _, files in sorted(os.walk(folder, followlinks=True)):
                found += [(os.path.join(dirpath, f), label) for f in sorted(files)
                          if f.lower().endswith(IMG_EXTENSIONS)]
            if not found:
                empty.append(name)
            samples += found
        if empty and class_names is None and samples:
            raise DataError(f'{root!r}: class folders without images: {empty[:10]} (each would become a class '
                            'with no examples); add images or remove the folders')
        if not samples:
            raise DataError(f'data directory {root!r} has no images ({", ".join(IMG_EXTENSIONS)}) in its class '
                            'folders')
        self.root, self.classes, self.samples = root, classes, samples
        self.num_classes = len(classes)
        self.targets = np.array([s[1] for s in samples], dtype=np.int64)
        self.transform, self.strict = transform, strict

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, item):
        index, seed = _unpack(item)
        path, target = self.samples[index]
        try:
            from PIL import Image
            with Image.open(path) as im:
                image = pil_to_rgb(im)
        except Exception as e:  # PIL raises many kinds for truncated / non-image files
            if self.strict:
                raise DataError(f'cannot read image {path!r}: {e} (drop --strict-data to skip such files)') from e
            return BadSample(path, f'{type(e).__name__}: {e}')
        return _apply(self.transform, image, seed), target


def pil_to_rgb(im) -> np.ndarray:
    """An HxWx3 uint8 array of a PIL image; 16-bit (and 32-bit integer) grey images are scaled to 8 bits,
    where PIL's ``convert('RGB')`` would clip every value above 255 to white."""
    if im.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        values = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith('I;16') or values.max(initial=0) <= 65535 else 2.0 ** 32 - 1
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert('RGB'))


class BadSample:
    """Stands in for an unreadable image; the collate function drops it and counts it."""

    def __init__(self, path: str, error: str):
        self.path, self.error = path, error


def _unpack(item) -> Tuple[int, Optional[int]]:
    if isinstance(item, (tuple, list)):
        return int(item[0]), int(item[1])
    return int(item), None


def _apply(transform, image: np.ndarray, seed: Optional[int]):
    if transform is None:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if seed is not None:
        transform.set_random_seed(seed)
    return transform(image=image)['image']


def collate_skip_bad(batch):
    """Stack the good samples; return (images, targets, [(path, error), ...] of dropped ones)."""
    bad = [(b.path, b.error) for b in batch if isinstance(b, BadSample)]
    good = [b for b in batch if not isinstance(b, BadSample)]
    if not good:
        return None, None, bad
    images = torch.stack([g[0] for g in good])
    targets = torch.tensor([g[1] for g in good], dtype=torch.int64)
    return images, targets, bad


class BadImageCounter:
    """Counts distinct skipped images; warns once (with the first path) so a bad dataset is never silent."""

    def __init__(self):
        self.paths = set()
        self.restored = 0  # count carried over from a resumed run

    @property
    def count(self) -> int:
        return self.restored + len(self.paths)

    def add(self, bad: Sequence[Tuple[str, str]]):
        if bad and self.count == 0:
            path, error = bad[0]
            warnings.warn(f'skipping unreadable image {path!r} ({error}); further ones are counted, not reported '
                          '(use --strict-data to stop instead)', stacklevel=2)
        self.paths.update(path for path, _ in bad)


def find_split_dir(data_dir: str, split: str) -> str:
    """``data_dir/train`` or ``data_dir/val`` (also ``validation``), with a clear error when absent."""
    if not os.path.isdir(data_dir):
        raise DataError(f'data directory {data_dir!r} does not exist')
    names = VAL_SPLIT_NAMES if split in VAL_SPLIT_NAMES else (split,)
    for name in names:
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            return path
    raise DataError(f'{data_dir!r} has no {"/".join(names)} sub-folder '
                    f'(expected {data_dir}/{names[0]}/<class>/<image>)')


def create_dataset(data_dir: Optional[str], split: str, transform=None, strict: bool = False, class_names=None):
    """The digits set when ``data_dir`` is None or 'digits', else the ImageFolder ``data_dir/<split>``."""
    if data_dir in (None, '', DIGITS):
        return DigitsDataset('val' if split in VAL_SPLIT_NAMES else split, transform=transform)
    return ImageFolderDataset(find_split_dir(data_dir, split), transform, strict=strict, class_names=class_names)


# ---------------------------------------------------------------------------------------------
# transforms (albumentations)

def _cv2_interpolation(name: str) -> int:
    import cv2
    table = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC, 'nearest': cv2.INTER_NEAREST,
             'area': cv2.INTER_AREA, 'lanczos': cv2.INTER_LANCZOS4, 'random': cv2.INTER_LINEAR}
    return table.get(str(name), cv2.INTER_CUBIC)


def _auto_augment_like(magnitude: float = 0.5):
    """One of several photometric/geometric ops per image, in the spirit of RandAugment (m≈9 of 30)."""
    import albumentations as A
    m = magnitude
    return A.OneOf([
        A.Affine(rotate=(-30 * m, 30 * m), p=1.0),
        A.Affine(shear=(-17 * m, 17 * m), p=1.0),
        A.Affine(translate_percent=(-0.45 * m, 0.45 * m), p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.9 * m, contrast_limit=0.9 * m, p=1.0),
        A.Posterize(num_bits=(max(1, int(8 - 4 * m)), 8), p=1.0),
        A.Solarize(threshold_range=(1 - m, 1.0), p=1.0),
        A.Equalize(p=1.0),
        A.Sharpen(p=1.0),
        A.HueSaturationValue(hue_shift_limit=0, sat_shift_limit=int(90 * m), val_shift_limit=0, p=1.0),
    ], p=1.0)


def train_transform(input_size, mean, std, interpolation='bicubic', scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                    hflip=0.5, color_jitter=0.4, auto_augment: Optional[str] = None, reprob=0.0):
    """RandomResizedCrop, flip, colour jitter, an auto-augment-like policy, normalise, (random erasing)."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2
    h, w = input_size[-2:]
    ops = [A.RandomResizedCrop(size=(h, w), scale=tuple(scale), ratio=tuple(ratio),
                               interpolation=_cv2_interpolation(interpolation))]
    if hflip > 0:
        ops.append(A.HorizontalFlip(p=hflip))
    if auto_augment:
        ops.append(_auto_augment_like(_aa_magnitude(auto_augment)))
    elif color_jitter:
        ops.append(A.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter, hue=0.0,
                                 p=0.8))
    ops.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    if reprob > 0:
        ops.append(A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, 0.4),
                                   hole_width_range=(0.1, 0.4), fill=0, p=reprob))
    ops.append(ToTensorV2())
    return A.Compose(ops)


def _aa_magnitude(policy: str) -> float:
    """Magnitude from a timm-style policy string (``rand-m9-mstd0.5-inc1`` -> 9/30*... ≈ 0.3..0.5)."""
    for part in str(policy).split('-'):
        if part.startswith('m') and part[1:].replace('.', '', 1).isdigit():
            return min(1.0, float(part[1:]) / 20.0)
    return 0.5


def eval_transform(input_size, mean, std, interpolation='bicubic', crop_pct=0.875):
    """timm's eval transform: resize the short side to size / crop_pct, centre crop, normalise."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2
    h, w = input_size[-2:]
    scale_size = int(np.floor(max(h, w) / crop_pct))
    return A.Compose([
        A.SmallestMaxSize(max_size=scale_size, interpolation=_cv2_interpolation(interpolation)),
        A.CenterCrop(height=h, width=w),
        A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
        ToTensorV2(),
    ])


# ---------------------------------------------------------------------------------------------
# sampling

class ShardedSampler(Sampler):
    """A seeded per-epoch permutation, sharded over ranks, yielding ``(index, sample_seed)``.

    Rank ``r`` takes positions ``r, r + W, r + 2W, ...`` of the permutation, so the union of the ranks'
    ``i``-th batches is exactly the ``i``-th batch of a one-process run with ``W`` times the batch size.
    ``drop_last`` trims the permutation to whole global batches (training); without it the last shard
    may be shorter and nothing is duplicated (evaluation, where counts are summed over ranks).
    ``skip`` (samples of this rank's shard) restarts a resumed run in the middle of an epoch.
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True):
        self.n, self.batch_size, self.rank, self.world = num_samples, batch_size, rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0):
        self.epoch, self.skip = epoch, skip_batches * self.batch_size

    def _indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.drop_last:
            order = order[:len(order) // (self.batch_size * self.world) * self.batch_size * self.world]
        return order[self.rank::self.world]

    def __len__(self):
        return max(0, len(self._indices()) - self.skip)

    def __iter__(self):
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for index in self._indices()[self.skip:]:
            yield int(index), int((base + int(index)) % (2 ** 32))


def create_loader(dataset, batch_size: int, sampler: ShardedSampler, workers: int = 0, pin_memory: bool = False):
    # A private generator: a DataLoader draws a worker base seed from its generator at every epoch, and
    # from the global RNG without one, which would shift dropout/drop-path draws after a resume.
    # The samples' own seeds come from the sampler, so this draw changes nothing else.
    generator = torch.Generator()
    generator.manual_seed(sampler.seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=False,
                      collate_fn=collate_skip_bad, pin_memory=pin_memory, persistent_workers=False,
                      generator=generator)


# ---------------------------------------------------------------------------------------------
# the digits as image files (``zoo digits DIR``): inputs for ``zoo predict`` / ``zoo validate --data-dir``

def write_digits(out_dir: str, splits: Sequence[str] = ('val',)) -> int:
    """Write the digits splits as ``out_dir/<split>/<class>/<index>.png`` (lossless: the same pixels as
    :class:`DigitsDataset`); returns the number of files written."""
    from PIL import Image
    count = 0
    for split in splits:
        dataset = DigitsDataset(split)
        for i, (image, target) in enumerate(zip(dataset.images, dataset.targets)):
            folder = os.path.join(out_dir, split, dataset.classes[target])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f'{i:04d}.png'))
            count += 1
    return count


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog='zoo digits', description='Write the embedded digits set as PNG image folders.')
    p.add_argument('out_dir', help='writes OUT_DIR/<split>/<class>/<index>.png')
    p.add_argument('--splits', nargs='+', default=['val'], choices=('train', 'val'))
    args = p.parse_args(argv)
    print(f'zoo digits: wrote {write_digits(args.out_dir, args.splits)} images to {args.out_dir}')
    return 0
