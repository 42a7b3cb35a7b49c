"""Naming rule: every zoo model is `zoo_<name>`; the plain name only where timm has none; timm never shadowed."""
import pytest
import timm
import timm.models.efficientvit_msra as timm_evit
from zoo.models.efficientvit import EfficientVit

import zoo


def test_zoo_prefix_for_every_model():
    names = zoo.list_models()
    assert names and all(n.startswith('zoo_') for n in names)
    assert set(names) <= set(timm.list_models('zoo_*'))


def test_timm_models_are_not_shadowed():
    assert isinstance(timm.create_model('efficientvit_m0'), timm_evit.EfficientVitMsra)
    assert isinstance(timm.create_model('zoo_efficientvit_m0'), EfficientVit)
    # zoo's own API reads plain names as the zoo's model
    assert isinstance(zoo.create_model('efficientvit_m0'), EfficientVit)
    assert isinstance(zoo.create_model('zoo_efficientvit_m0'), EfficientVit)


def test_plain_names_registered_only_where_timm_has_none():
    from zoo.models._builder import _PLAIN_REGISTERED
    for name in zoo.list_models():
        plain = name[len('zoo_'):]
        fn = timm.models.model_entrypoint(plain) if timm.is_model(plain) else None
        if plain in _PLAIN_REGISTERED:
            assert fn is not None and fn.__module__.startswith('zoo.'), plain
        else:
            assert fn is not None and not fn.__module__.startswith('zoo.'), f'{plain} should be timm\'s'


def test_list_models_pattern_accepts_plain_names():
    assert zoo.list_models('efficientvit_m*') == zoo.list_models('zoo_efficientvit_m*')
    assert 'zoo_efficientvit_m0' in zoo.list_models('efficientvit_m0')


def test_pretrained_cfg_is_ours():
    model = timm.create_model('zoo_efficientvit_m0')
    assert model.pretrained_cfg['architecture'] == 'zoo_efficientvit_m0'
    assert model.pretrained_cfg['hf_hub_id'] == 'timm/efficientvit_m0.r224_in1k'


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match='unknown zoo model'):
        zoo.create_model('efficientvit_m9')
