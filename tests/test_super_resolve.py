"""tools/super_resolve.py (zoo sr): tiled inference, PSNR/SSIM (Y channel), end to end on real photographs
(scikit-learn's sample images china.jpg / flower.jpg)."""
import os

import pytest
import torch
import torch.nn.functional as F

from zoo.super_resolve import main, psnr_y, ssim_y, upscale_tiled


def _photo(name='china.jpg'):
    sk = pytest.importorskip('sklearn.datasets')
    path = os.path.join(os.path.dirname(sk.__file__), 'images', name)
    if not os.path.exists(path):
        pytest.skip(f'{path} absent')
    return path


def test_tiled_equals_whole_for_a_local_model():
    """With a pointwise model the blended tiles must reproduce the whole-image result exactly (weights sum)."""
    model = lambda x: F.interpolate(x, scale_factor=3, mode='nearest')  # noqa: E731
    lr = torch.rand(1, 3, 37, 53)
    whole = model(lr)
    for tile, overlap in [(16, 4), (20, 0), (64, 8)]:
        tiled = upscale_tiled(model, lr, 3, tile, overlap)
        assert tiled.shape == whole.shape
        assert torch.allclose(tiled, whole, atol=1e-6)


def test_tiled_catanet_runs_and_matches_inside_tiles():
    import timm

    import zoo  # noqa: F401
    torch.manual_seed(0)
    model = timm.create_model('catanet_x2').eval()
    lr = torch.rand(1, 3, 30, 44)
    with torch.no_grad():
        tiled = upscale_tiled(model, lr, 2, tile=30, overlap=16)
        whole = model(lr)
    assert tiled.shape == whole.shape == (1, 3, 60, 88)
    assert torch.isfinite(tiled).all()
    # the first tile alone covers columns 0..29 with full weight on 0..13: identical to that tile's own output
    with torch.no_grad():
        first = model(lr[:, :, :, :30])
    assert torch.allclose(tiled[..., :28], first[..., :28], atol=1e-5)


def test_metrics():
    img = torch.rand(3, 40, 40)
    assert psnr_y(img, img, 4) == float('inf')
    assert ssim_y(img, img, 4) == pytest.approx(1.0)
    noisy = (img + 0.05 * torch.randn_like(img)).clamp(0, 1)
    assert 20 < psnr_y(noisy, img, 4) < 35
    assert ssim_y(noisy, img, 4) < 0.99


def test_cli_eval_bicubic_on_photographs(capsys, tmp_path):
    """The Set5/Set14 protocol on real photographs with the bicubic baseline: PSNR in the usual range."""
    rc = main([_photo('china.jpg'), _photo('flower.jpg'), '--model', 'bicubic_x4', '--eval', '-o', str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    psnrs = [float(line.split('PSNR(Y) ')[1].split(' dB')[0]) for line in out.splitlines() if 'jpg:' in line]
    assert len(psnrs) == 2 and all(22 < p < 40 for p in psnrs), out
    assert os.path.exists(tmp_path / 'china_x4.png')


def test_cli_catanet_tiled_on_a_photograph(tmp_path):
    from PIL import Image
    small = tmp_path / 'crop.png'
    with Image.open(_photo('china.jpg')) as im:
        im.convert('RGB').crop((200, 100, 236, 128)).save(small)  # 36 x 28 LR crop of a real photo
    with pytest.warns(UserWarning, match='RANDOM'):
        rc = main([str(small), '--model', 'catanet_x2', '--tile', '32', '--tile-overlap', '8', '-o', str(tmp_path)])
    assert rc == 0
    with Image.open(tmp_path / 'crop_x2.png') as out:
        assert out.size == (72, 56)


def test_cli_writes_into_the_output_folder_and_never_overwrites(tmp_path, monkeypatch, capsys):
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    Image.new('RGB', (24, 24), (120, 30, 200)).save(tmp_path / 'hr.png')
    assert main(['hr.png', '--model', 'bicubic_x2', '--eval']) == 0
    assert os.listdir(tmp_path / 'output' / 'sr') == ['hr_x2.png'] and sorted(os.listdir(tmp_path)) == ['hr.png',
                                                                                                       'output']
    before = (tmp_path / 'output' / 'sr' / 'hr_x2.png').read_bytes()
    (tmp_path / 'output' / 'sr' / 'hr_x2.png').write_bytes(b'the user edited this')
    assert main(['hr.png', '--model', 'bicubic_x2', '--eval']) == 2
    assert 'pass --overwrite' in capsys.readouterr().err
    assert (tmp_path / 'output' / 'sr' / 'hr_x2.png').read_bytes() == b'the user edited this'
    assert main(['hr.png', '--model', 'bicubic_x2', '--eval', '--overwrite']) == 0
    assert (tmp_path / 'output' / 'sr' / 'hr_x2.png').read_bytes() == before
