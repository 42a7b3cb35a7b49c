"""MOAT: structure (exact parameter counts), TF checkpoint mapping of every released variant, parity with the TF
fixtures (google-research/deeplab2 run under TF 2.15), the TF-specific layers, windows, weights loading, converter."""
import glob
import json
import os

import pytest
import timm
import torch
import torch.nn.functional as F
import zoo.ops._dispatch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from zoo.models.moat import (
    AvgPool2dSameExclusive,
    Moat,
    checkpoint_filter_fn,
    convert_tf_checkpoint,
    relative_position_bias,
    tf_to_zoo_name,
)

import zoo
import zoo.convert

EMA = '/ExponentialMovingAverage'


def _moat_dir(fixtures_dir):
    path = os.path.join(fixtures_dir, 'moat')
    if not os.path.isdir(path):
        pytest.skip('no MOAT fixtures')
    return path


def _variant_of(official: str) -> str:
    """'tiny_moat0_pretrain_256_no_pe_1k' -> 'tiny_moat_0_no_pe'."""
    base = official.split('_pretrain')[0].split('_finetune')[0]
    name = base[:-1] + '_' + base[-1]
    return name + ('_no_pe' if '_no_pe' in official else '')


def _meta_model(name, **kwargs):
    with torch.device('meta'):
        return timm.create_model(name, **kwargs)


def _load_case(path):
    t = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kwargs = json.loads(meta['constructor_kwargs'])
    official = {k: t['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    return t, kwargs, official


def _build_from_official_kwargs(kw):
    if 'name' in kw:  # get_model(name, ...) with a released config
        return zoo.create_model(_variant_of(kw['name']), pool_size=kw['pool_size'], window_size=kw['window_size'],
                                num_classes=kw['override_config']['build_classification_head_with_class_num'])
    return Moat(
        stem_chs=kw['stem_size'], block_types=kw['block_type'], depths=kw['num_blocks'], dims=kw['hidden_size'],
        head_dim=kw['head_size'], num_classes=kw['build_classification_head_with_class_num'],
        window_size=kw['window_size'], pool_size=kw['pool_size'],
        global_attn_at_stage_end=kw.get('global_attention_at_end_of_moat_stage', False))


# ---------------------------------------------------------------------------------------------------------------
# structure

PUBLISHED_M = {  # deeplab2 g3doc, millions of parameters (with / without position embedding)
    'moat_0': 27.8, 'moat_1': 41.6, 'moat_2': 73.4, 'moat_3': 190.0, 'moat_4': 483.2,
    'moat_0_no_pe': 27.8, 'moat_1_no_pe': 41.5, 'moat_2_no_pe': 73.2, 'moat_3_no_pe': 189.5, 'moat_4_no_pe': 482.5,
    'tiny_moat_0': 3.4, 'tiny_moat_1': 5.1, 'tiny_moat_2': 9.8, 'tiny_moat_3': 19.5,
    'tiny_moat_0_no_pe': 3.3, 'tiny_moat_1_no_pe': 5.1, 'tiny_moat_2_no_pe': 9.7, 'tiny_moat_3_no_pe': 19.5,
}


@pytest.mark.parametrize('name', sorted(PUBLISHED_M))
def test_param_count_published(name):
    # the g3doc rounds to 0.1M (3,355,348 is "3.4M"): our count must round to the published figure
    n = sum(p.numel() for p in _meta_model(name).parameters())
    assert abs(n / 1e6 - PUBLISHED_M[name]) <= 0.05, n


def test_registered_names():
    names = zoo.list_models('*moat*')
    assert len(names) == 18
    for n in names:
        assert timm.is_model(n) and timm.is_model(n[len('zoo_'):])  # timm has no MOAT: plain names too


def test_every_released_variant_maps_exactly(fixtures_dir):
    """Every variable of every released checkpoint's key list maps to one model tensor of the same shape and back,
    with and without the EMA copies; the trainable count equals the official model's."""
    files = sorted(glob.glob(os.path.join(_moat_dir(fixtures_dir), '*_keys.json')))
    assert len(files) == 18
    for path in files:
        info = json.load(open(path))
        name = _variant_of(info['variant'])
        model = _meta_model(name)
        assert sum(p.numel() for p in model.parameters()) == info['num_params_trainable'], name
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        tf_vars = {k: torch.empty(shape, device='meta') for k, shape in info['keys'].items()}
        mapped = [tf_to_zoo_name(k) for k in tf_vars]
        assert None not in mapped and len(set(mapped)) == len(mapped), name  # one-to-one
        with_ema = dict(tf_vars, **{k + EMA: v for k, v in tf_vars.items()})
        for src in (tf_vars, with_ema):
            sd = convert_tf_checkpoint(src)
            # only the BN step counters (no TF counterpart) are added on top of the one-to-one map
            assert set(sd) - set(mapped) == {k for k in expected if k.endswith('num_batches_tracked')}
            assert {k: tuple(v.shape) for k, v in sd.items()} == expected, name


# ---------------------------------------------------------------------------------------------------------------
# parity with the TF original

CASES = ['small_224', 'small_odd_136x104', 'small_window_192x160', 'tiny_moat0_256']


@pytest.mark.parametrize('case', CASES)
def test_parity_with_tf(fixtures_dir, case):
    t, kw, official = _load_case(os.path.join(_moat_dir(fixtures_dir), case + '.safetensors'))
    model = _build_from_official_kwargs(kw).eval()
    model.load_state_dict(checkpoint_filter_fn(official, model), strict=True)
    with torch.no_grad():
        final, inters = model.forward_intermediates(t['input'])
        out = model.forward_head(final)
    assert out.shape == t['output'].shape
    assert (out - t['output']).abs().max().item() <= 1e-4
    for i in range(4):
        if f'stage.{i}' in t:
            assert (inters[i] - t[f'stage.{i}']).abs().max().item() <= 1e-4, i


# ---------------------------------------------------------------------------------------------------------------
# TF-specific layers

def test_avgpool_same_excludes_padding():
    x = torch.randn(2, 3, 9, 8)
    for k in (2, 3):
        out = AvgPool2dSameExclusive(k, 2)(x)
        H, W = x.shape[-2:]
        oh, ow = -(-H // 2), -(-W // 2)
        pad_h, pad_w = max((oh - 1) * 2 + k - H, 0), max((ow - 1) * 2 + k - W, 0)
        expect = torch.empty(2, 3, oh, ow)
        for i in range(oh):
            for j in range(ow):
                r0, c0 = i * 2 - pad_h // 2, j * 2 - pad_w // 2
                win = x[..., max(r0, 0):min(r0 + k, H), max(c0, 0):min(c0 + k, W)]
                expect[..., i, j] = win.mean((-2, -1))  # real cells only
        torch.testing.assert_close(out, expect)


def test_relative_position_bias_is_key_minus_query():
    table = torch.randn(2, 5, 7)  # built for a 3 x 4 window: no resize
    bias = relative_position_bias(table, 3, 4)
    for i in range(3):
        for j in range(4):
            for x in range(3):
                for y in range(4):
                    assert torch.equal(bias[:, i * 4 + j, x * 4 + y], table[:, x - i + 2, y - j + 3])
    resized = relative_position_bias(table, 2, 5)  # -> [3, 9] bilinear, half-pixel
    table_r = F.interpolate(table[None], size=(3, 9), mode='bilinear', align_corners=False)[0]
    assert torch.equal(resized[:, 0, 1 * 5 + 2], table_r[:, 1 - 0 + 1, 2 - 0 + 4])


# ---------------------------------------------------------------------------------------------------------------
# windows and inputs

def _small(**kw):
    torch.manual_seed(0)
    return Moat(stem_chs=(8, 8), depths=(1, 1, 2, 1), dims=(8, 16, 32, 32), head_dim=8, num_classes=5, **kw).eval()


def test_masked_padded_window_equals_global_without_pe():
    # one padded window covering the whole map: masking the padded keys must give global attention exactly
    glob_model = _small(rel_pos=False)
    win_model = _small(rel_pos=False, window_size=[None, None, 8, 4])
    win_model.load_state_dict(glob_model.state_dict())
    x = torch.randn(2, 3, 100, 76)  # maps 7x5 (stride 16) and 4x3 (stride 32): both padded
    with torch.no_grad():
        torch.testing.assert_close(win_model(x), glob_model(x), rtol=1e-5, atol=1e-5)


def test_window_attention_any_size_and_window_spec():
    model = _small(window_size=[None, None, (3, 2), 2])
    assert model.stages[2].blocks[0].window_size == (3, 2) and model.stages[3].blocks[0].window_size == (2, 2)
    for size in ((64, 64), (97, 131)):
        with torch.no_grad():
            out = model(torch.randn(1, 3, *size))
        assert out.shape == (1, 5) and torch.isfinite(out).all()
    end = _small(window_size=(2, 2), global_attn_at_stage_end=True)
    assert end.stages[2].blocks[0].window_size == (2, 2) and end.stages[2].blocks[-1].window_size is None


def test_bad_inputs():
    model = _small()
    with pytest.raises(ValueError, match='expects input'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='too small'):
        model(torch.randn(1, 3, 0, 64))
    with pytest.raises(ValueError, match='window'):
        _small(window_size=[None, (0, 2)])
    with pytest.raises(ValueError, match='window'):
        _small(window_size=[None, None, (3, 'a'), 2])
    with pytest.raises(ValueError, match='pool_size'):
        _small(pool_size=5)


def test_features_and_intermediates():
    model = zoo.create_model('tiny_moat_0', features_only=True, pretrained=False)
    feats = model(torch.randn(1, 3, 96, 80))
    assert [f.shape[1] for f in feats] == [32, 64, 128, 256]
    assert [f.shape[-2:] for f in feats] == [(24, 20), (12, 10), (6, 5), (3, 3)]
    assert model.feature_info.reduction() == [4, 8, 16, 32]


# ---------------------------------------------------------------------------------------------------------------
# weights: EMA choice, idempotence, pretrained loading, converter

def test_ema_choice_and_idempotence():
    tf_vars = {'moat/stem/conv_0/kernel': torch.ones(3, 3, 3, 4),
               'moat/stem/conv_0/kernel' + EMA: torch.zeros(3, 3, 3, 4),
               'moat/stem/conv_0/bias': torch.ones(4), 'global_step': torch.tensor(5),
               'moat/stem/conv_0/kernel/Momentum': torch.ones(3, 3, 3, 4)}
    assert checkpoint_filter_fn(tf_vars)['stem.conv1.weight'].abs().sum() == 0  # EMA by default
    raw = checkpoint_filter_fn(tf_vars, use_ema=False)
    assert raw['stem.conv1.weight'].shape == (4, 3, 3, 3) and raw['stem.conv1.weight'].min() == 1
    assert set(raw) == {'stem.conv1.weight', 'stem.conv1.bias'}  # optimizer slots / step dropped
    zoo_sd = _small().state_dict()
    again = checkpoint_filter_fn({'state_dict': zoo_sd})
    assert again.keys() == zoo_sd.keys() and all(torch.equal(again[k], zoo_sd[k]) for k in zoo_sd)


def test_pretrained_and_converter_round_trip(fixtures_dir, tmp_path):
    src = os.path.join(_moat_dir(fixtures_dir), 'tiny_moat0_256.safetensors')
    t, _, official = _load_case(src)
    out = tmp_path / 'tiny_moat_0.safetensors'
    assert zoo.convert.main(['moat', '--variant', 'tiny_moat_0', '--src', src, '--out', str(out)]) == 0
    model = zoo.create_model('tiny_moat_0', pretrained=True, pretrained_cfg_overlay=dict(file=str(out))).eval()
    # a file of raw TF variable names loads too (the filter converts it)
    tf_file = tmp_path / 'tf_names.safetensors'
    save_file({k: v.contiguous() for k, v in official.items()}, str(tf_file))
    model_tf = zoo.create_model('tiny_moat_0', pretrained=True, pretrained_cfg_overlay=dict(file=str(tf_file))).eval()
    x = t['input'][:1]
    with torch.no_grad():
        assert (model(x) - t['output'][:1]).abs().max() <= 1e-4
        assert torch.equal(model(x), model_tf(x))
    assert zoo.convert.main(['moat', '--variant', 'moat_0', '--src', src, '--out', str(tmp_path / 'x.st')]) == 2


def _convert_and_run(src, out, x, *extra):
    assert zoo.convert.main(['moat', '--variant', 'tiny_moat_0', '--src', str(src), '--out', str(out), *extra]) == 0
    model = zoo.create_model('tiny_moat_0', pretrained=True, pretrained_cfg_overlay=dict(file=str(out))).eval()
    with torch.no_grad():
        return model(x)


def test_converter_keeps_0d_and_drops_non_numeric_entries(fixtures_dir, tmp_path):
    """A TF checkpoint holds 0-d variables (global_step) and, in TF1, string entries: neither may stop the converter.
    TF's reader returns a 0-d variable as a numpy scalar (not an array); the .npz path gives a 0-d array."""
    import numpy as np
    tensors = zoo.convert.numeric_tensors([('global_step', np.int64(1234)), ('w', np.ones((2, 3), np.float32)),
                                           ('_CHECKPOINTABLE_OBJECT_GRAPH', np.bytes_(b'graph'))])
    assert set(tensors) == {'global_step', 'w'} and tensors['global_step'].shape == () \
        and int(tensors['global_step']) == 1234
    t, _, official = _load_case(os.path.join(_moat_dir(fixtures_dir), 'tiny_moat0_256.safetensors'))
    npz = tmp_path / 'tf_vars.npz'
    np.savez(npz, global_step=np.array(1234, np.int64), **{k: v.numpy() for k, v in official.items()})
    out = _convert_and_run(npz, tmp_path / 'x.safetensors', t['input'][:1])
    assert (out - t['output'][:1]).abs().max() <= 1e-4


@pytest.mark.slow  # TensorFlow's import and a 700-variable TF1 graph: ~30 s (CI has no TensorFlow: skipped there)
def test_converter_reads_a_tf1_saver_checkpoint(fixtures_dir, tmp_path):
    """A real TF1 checkpoint as the released archives hold it (tf.compat.v1.train.Saver: the variables under their TF1
    names, /ExponentialMovingAverage copies, global_step): EMA weights by default, the raw ones with --no-ema."""
    tf = pytest.importorskip('tensorflow', reason='the convert extra (tensorflow-cpu) is not installed')
    moat_dir = _moat_dir(fixtures_dir)
    t, _, official = _load_case(os.path.join(moat_dir, 'tiny_moat0_256.safetensors'))
    keys_file = os.path.join(moat_dir, 'tiny_moat0_pretrain_256_1k_keys.json')
    non_trainable = set(json.load(open(keys_file))['non_trainable'])
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(value.numpy()), use_resource=False,
                                               trainable=name not in non_trainable) for name, value in official.items()]
        step = tf.compat.v1.train.get_or_create_global_step()
        ema = tf.compat.v1.train.ExponentialMovingAverage(0.9999, num_updates=step)
        ema.apply(variables)  # shadows (BN moving statistics included) start at the official values
        # then a "training step" moves the raw variables away from their averages
        train_step = [tf.compat.v1.assign_add(v, tf.ones_like(v)) for v in variables] + [tf.compat.v1.assign(step, 7)]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.variables_initializer(variables + [step]))
            sess.run(tf.compat.v1.variables_initializer([ema.average(v) for v in variables]))
            sess.run(train_step)
            tf.compat.v1.train.Saver().save(sess, str(tmp_path / 'ckpt' / 'model.ckpt'), global_step=step)
    x = t['input'][:1]
    out = _convert_and_run(tmp_path / 'ckpt', tmp_path / 'ema.safetensors', x)
    assert (out - t['output'][:1]).abs().max() <= 1e-4
    _convert_and_run(tmp_path / 'ckpt', tmp_path / 'raw.safetensors', x, '--no-ema')
    ema_sd, raw_sd = load_file(str(tmp_path / 'ema.safetensors')), load_file(str(tmp_path / 'raw.safetensors'))
    assert ema_sd.keys() == raw_sd.keys()
    for k, v in ema_sd.items():
        if v.is_floating_point():
            assert torch.equal(raw_sd[k], v + 1), k


# ---------------------------------------------------------------------------------------------------------------
# the fused attention path (Triton; under the interpreter on CPU at a tiny shape)

@pytest.mark.skipif(not zoo.ops._dispatch.HAS_TRITON, reason='triton is not installed')
def test_triton_attention_with_padded_windows_and_rel_pos():
    from zoo.models.moat import window_partition
    from zoo.ops.attention import attention_reference, attention_triton
    torch.manual_seed(0)
    windows, mask = window_partition(torch.randn(2, 5, 3, 8), (4, 2))  # padded to 8x4: 4 windows, masked keys
    table = torch.randn(2, 13, 13, requires_grad=True)  # trained for 7x7, resized to the 4x2 window
    q, k, v = (torch.randn(windows.shape[0], 2, 8, 4, requires_grad=True) for _ in range(3))
    results = []
    for fn in (attention_reference, attention_triton):
        for t in (q, k, v, table):
            t.grad = None
        bias = relative_position_bias(table, 4, 2)[None] + mask[:, None, None, :]
        out = fn(q, k, v, bias, 0.5)
        out.square().sum().backward()
        results.append([out.detach()] + [t.grad.clone() for t in (q, k, v, table)])
    for ref, tri in zip(*results):
        torch.testing.assert_close(tri, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_fused_model_matches_cpu_reference():
    torch.manual_seed(0)
    model = zoo.create_model('tiny_moat_0', window_size=[None, None, 7, 7]).eval()
    x = torch.randn(2, 3, 256, 224)
    with torch.no_grad():
        ref = model(x)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        out = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_export_path_matches_eager(capture_paths):
    """Under export the SAME pool, window padding/mask and bias resize always run (symbolic sizes): same numbers."""
    from zoo.models import moat
    torch.manual_seed(0)
    model = timm.create_model('zoo_tiny_moat_0', num_classes=5, window_size=[None, None, (4, 4), (2, 2)]).eval()
    for size in ((64, 64), (80, 112)):  # no padding anywhere; odd stride-16 maps (pool pad, window pad + mask)
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = model(x)
            with capture_paths(moat):
                got = model(x)
        assert (got - ref).abs().max().item() <= 1e-5, size
