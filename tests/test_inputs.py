"""What every family does with unusual inputs (each family's smallest model): its true minimum size (the minimum runs,
one pixel less is a clear error), a batch of 0 images (an empty output of the right shape, as plain PyTorch layers
give), and inputs of the wrong dtype (a TypeError saying what to do; autocast and matching half models still run)."""
import pytest
import timm
import torch
from zoo.models._builder import family_of, smallest_per_family

SMALLEST = smallest_per_family()
# the smallest side each family's down-sampling arithmetic allows (see the family's check): ceil-rounding (padded)
# convs keep a 1x1 last map for any image; LITv2's un-padded merges need ceil(H / 4) >= 8; PATNet's un-padded patch
# embedding and merges a whole 32 px patch; CATANet's reflection padding 2 px
MIN_SIDE = {'moat': 1, 'biformer': 1, 'efficientvit': 1, 'davit': 1, 'overlock': 1, 'a2mamba': 1, 'volo': 1,
            'litv2': 29, 'patnet': 32, 'catanet': 2}


def _build(name, **kwargs):
    if family_of(name) == 'volo':  # the fixed-size VOLO takes only img_size; its any-size form pads to 16
        kwargs.setdefault('dynamic_img_size', True)
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


def test_every_family_has_a_minimum():
    assert {family_of(n) for n in SMALLEST} == set(MIN_SIDE)


@pytest.mark.parametrize('name', SMALLEST + ['zoo_biformer_stl'])
def test_true_minimum_size(name):
    side = 32 if name == 'zoo_biformer_stl' else MIN_SIDE[family_of(name)]  # STL: 4x4 patch conv, 2x2 merges
    model = _build(name)
    with torch.no_grad():
        out = model(torch.randn(1, 3, side, side + 1))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=rf'too small: H and W must be at least {side}\b'):
        model(torch.randn(1, 3, side - 1, side + 1))


@pytest.mark.parametrize('name', SMALLEST)
def test_empty_batch(name):
    model = _build(name)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for fn in (model, model.forward_features):
            assert fn(x[:0]).shape == (0, *fn(x).shape[1:])
    if getattr(model, 'is_classifier', True):
        feats = _build(name, features_only=True)
        with torch.no_grad():
            assert [f.shape for f in feats(x[:0])] == [(0, *f.shape[1:]) for f in feats(x)]
    # a training step on no images must not change the model (CATANet's token centres stay unset)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.no_grad():
        assert model(x[:0]).shape[0] == 0
    after = {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
    assert all(torch.equal(before[k], v) for k, v in after.items())


@pytest.mark.parametrize('name', SMALLEST)
def test_input_dtype(name):
    model = _build(name)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(TypeError, match=r'torch.uint8 image batch: convert it to floating point and normalise'):
        model((x * 255).to(torch.uint8))
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf'{dtype} input but its weights are torch.float32: .*model.to'):
            model(x.to(dtype))
    with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):  # autocast casts at each op: any float input
        assert torch.isfinite(model(x).float()).all() and torch.isfinite(model(x.bfloat16()).float()).all()
    with torch.no_grad():  # a bf16 model takes bf16 input
        assert model.to(torch.bfloat16)(x.bfloat16()).dtype == torch.bfloat16
