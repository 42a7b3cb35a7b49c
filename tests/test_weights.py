"""weights/<family>.json stay in sync with the families' default_cfgs (regenerate: python -m zoo.weights --write)."""
import json
import os

import torch

from zoo.weights import MANIFEST_DIR, build_manifests


def test_manifests_match_the_registered_cfgs():
    built = build_manifests()
    for family, manifest in built.items():
        path = os.path.join(MANIFEST_DIR, f'{family}.json')
        assert os.path.exists(path), f'missing {path}: run python -m zoo.weights --write'
        with open(path) as f:
            on_disk = json.load(f)
        assert on_disk == json.loads(json.dumps(manifest)), f'{path} is stale: run python -m zoo.weights --write'


def test_every_manifest_entry_names_a_converter_that_exists():
    import importlib
    for manifest in build_manifests().values():
        module, _, fn = manifest['converter'].rpartition('.')
        assert callable(getattr(importlib.import_module(module), fn))


# ---------------------------------------------------------------------------------------------
# loading pretrained weights: strict means strict, partial loads are measured, cache names are unique

def _saved(tmp_path, name, **kwargs):
    import timm
    from safetensors.torch import save_file
    model = timm.create_model(name, **kwargs)
    path = str(tmp_path / f'{name}.safetensors')
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def test_features_only_load_of_another_architecture_raises(tmp_path):
    import pytest
    import timm

    from zoo.errors import UserError
    m1 = _saved(tmp_path, 'zoo_efficientvit_m1')  # same family, other widths: nothing fits
    other = _saved(tmp_path, 'zoo_patnet_t0')     # another family: no key in common
    for path in (m1, other):
        # timm itself loads features_only models non-strictly: before, this kept random weights silently
        with pytest.raises(UserError, match='another architecture or variant'):
            timm.create_model('zoo_efficientvit_m0', features_only=True, pretrained=True,
                              pretrained_cfg_overlay=dict(file=path))
    with pytest.raises(UserError, match=r'fills only 0\.0%.*pretrained_min_loaded=0'):
        timm.create_model('zoo_efficientvit_m0', features_only=True, pretrained=True, pretrained_strict=False,
                          pretrained_cfg_overlay=dict(file=other))
    # asked for explicitly: a partial load goes through, with its fraction reported
    timm.create_model('zoo_efficientvit_m0', features_only=True, pretrained=True, pretrained_strict=False,
                      pretrained_min_loaded=0, pretrained_cfg_overlay=dict(file=other))


def test_partial_load_reports_the_fraction(tmp_path, caplog):
    import pytest
    import timm
    from safetensors.torch import load_file, save_file
    full = load_file(_saved(tmp_path, 'zoo_efficientvit_m0'))
    part = {k: v for k, v in full.items() if not k.startswith('stages.2')}
    path = str(tmp_path / 'part.safetensors')
    save_file(part, path)
    from zoo.errors import UserError
    with pytest.raises(UserError, match='tensors missing'):
        timm.create_model('zoo_efficientvit_m0', features_only=True, pretrained=True, pretrained_cfg_overlay=dict(
            file=path))
    with caplog.at_level('WARNING'):
        model = timm.create_model('zoo_efficientvit_m0', features_only=True, pretrained=True, pretrained_strict=False,
                                  pretrained_min_loaded=0.1, pretrained_cfg_overlay=dict(file=path))
    assert any('% of the parameters loaded' in r.getMessage() for r in caplog.records)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in part.items() if k in state)
    # the same architecture, whatever head: strict loads without a word
    timm.create_model('zoo_efficientvit_m0', features_only=True, pretrained=True,
                      pretrained_cfg_overlay=dict(file=_saved(tmp_path, 'zoo_efficientvit_m0', num_classes=3)))


def test_weight_cache_names_are_unique_per_weight(monkeypatch):
    import pytest
    import timm
    from zoo.models import _builder

    import zoo
    names = {}
    for model in zoo.list_models():
        for tagged in timm.list_pretrained(model, exclude_filters=()):
            cfg = timm.models.get_pretrained_cfg(tagged)
            if cfg is not None and cfg.url:
                names.setdefault(_builder.weights_cache_name(cfg), set()).add(cfg.url)
    shared = {name: urls for name, urls in names.items() if len(urls) > 1}
    assert not shared, f'weights that would share a cache file: {shared}'
    # pretrained=True for BiFormer-S downloads (and reads) its own file, not tiny's `content`
    calls = []

    def fake_download(url, **kwargs):
        calls.append(url)
        raise ConnectionError('no network in tests')
    monkeypatch.setattr(_builder, 'download_cached_file', fake_download)
    with pytest.raises(ConnectionError):
        timm.create_model('zoo_biformer_small', pretrained=True)
    assert calls and calls[0][1] == 'zoo_biformer_small.in1k.pth' and calls[0][0].endswith('/root/content')
