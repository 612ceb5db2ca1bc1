"""DeepMind DetCon .npy import: Haiku layouts, safe loading, key checks, SAME padding, mmpretrain/mmdet loading."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, run_tool
from mmdetcon.converters import haiku_to_mmpretrain, load_plain
from mmdetcon.models.backbones import MaxPool2dSamePadding, ResNetSamePadding
from mmdetcon.models.backbones.resnet_same_padding import same_padding
from mmdetcon.utils.cli import UserError

TOOL = 'tools/model_converters/import_detcon.py'
SAME_R50 = osp.join(ROOT, 'configs', 'benchmarks', 'mmdet', 'mask-rcnn_r50-same_fpn_ms-1x_coco.py')
STOCK_R50 = osp.join(ROOT, 'configs', 'benchmarks', 'mmdet', 'mask-rcnn_r50_fpn_ms-1x_coco.py')
R18, R50, R200 = (2, 2, 2, 2), (3, 4, 6, 3), (3, 24, 36, 3)


def haiku_resnet(net: str, blocks, bottleneck: bool = True, shapes_only: bool = False, seed: int = 0):
    """Params and state of DetCon's ``ResNetTorso`` as Haiku names them (``hk.nets.ResNet.BlockGroup``,
    ``BlockV1``), written from the documented names: {module_path: {name: array}} (HWIO kernels, BN
    vectors of shape (1, 1, 1, C), EMA states with counter/hidden/average)."""
    rng = np.random.default_rng(seed)
    params, state = {}, {}

    def make(shape, low=-1.0, high=1.0):
        if shapes_only:
            return np.broadcast_to(np.float32(0.5), shape)
        return rng.uniform(low, high, shape).astype(np.float32)

    def conv(path, k, cin, cout):
        params[f'{net}/~/{path}'] = {'w': make((k, k, cin, cout), -0.1, 0.1)}

    def bn(path, c):
        params[f'{net}/~/{path}'] = {'scale': make((1, 1, 1, c), 0.5, 1.5), 'offset': make((1, 1, 1, c))}
        for ema, low in (('mean_ema', -1.0), ('var_ema', 0.5)):
            state[f'{net}/~/{path}/~/{ema}'] = {'counter': np.array(1234, np.int32),
                                                'hidden': make((1, 1, 1, c)),
                                                'average': make((1, 1, 1, c), low, low + 1.0)}

    conv('initial_conv', 7, 3, 64)
    bn('initial_batchnorm', 64)
    cin = 64
    for g, n in enumerate(blocks):
        cout = (256 if bottleneck else 64) * 2 ** g
        mid = cout // 4 if bottleneck else cout
        for b in range(n):
            block = f'block_group_{g}/~/block_{b}'
            if b == 0:
                conv(f'{block}/~/shortcut_conv', 1, cin, cout)
                bn(f'{block}/~/shortcut_batchnorm', cout)
            convs = [(1, cin, mid), (3, mid, mid), (1, mid, cout)] if bottleneck else [(3, cin, cout), (3, cout, cout)]
            for k, (size, a, c) in enumerate(convs):
                conv(f'{block}/~/conv_{k}', size, a, c)
                bn(f'{block}/~/batchnorm_{k}', c)
            cin = cout
    return params, state


def heads(params, state):
    """DetCon-B's projector/predictor MLPs and linear probe, which the importer skips."""
    for head in ('projector', 'predictor'):
        params[f'{head}/~/linear'] = {'w': np.ones((8, 4), np.float32), 'b': np.zeros(4, np.float32)}
        params[f'{head}/~/batch_norm'] = {'scale': np.ones(4, np.float32), 'offset': np.zeros(4, np.float32)}
        state[f'{head}/~/batch_norm/~/mean_ema'] = {'counter': np.array(3, np.int32), 'average': np.zeros(4)}
    params['classifier'] = {'w': np.ones((8, 1000), np.float32), 'b': np.zeros(1000, np.float32)}


def flat(tree):
    return {f'{module}/{name}': v for module, leaves in tree.items() for name, v in leaves.items()}


def layouts(params, state):
    """The top-level forms the released file may have."""
    merged = {**params, **state}
    return {
        'nested': merged,
        'nested-params-state': {'params': params, 'state': state},
        'flat': flat(merged),
        'flat-online-target': {'online_params': flat(params), 'online_state': flat(state),
                               'target_params': {'x/w': np.zeros(1)}, 'opt_state': [np.zeros(1)]},
    }


def check_values(state, params, hstate, net):
    """Hand-picked correspondences (Haiku name -> mmpretrain name)."""
    def p(path, name):
        return torch.from_numpy(np.asarray(params[f'{net}/~/{path}'][name]))

    def s(path, ema, name):
        return torch.from_numpy(np.asarray(hstate[f'{net}/~/{path}/~/{ema}'][name]))

    w = p('initial_conv', 'w')  # (7, 7, 3, 64) HWIO
    assert torch.equal(state['conv1.weight'][5, 2, 1, 3], w[1, 3, 2, 5])
    assert torch.equal(state['bn1.weight'], p('initial_batchnorm', 'scale').flatten())
    assert torch.equal(state['bn1.running_var'], s('initial_batchnorm', 'var_ema', 'average').flatten())
    assert int(state['bn1.num_batches_tracked']) == 1234
    w = p('block_group_2/~/block_0/~/conv_1', 'w')
    assert torch.equal(state['layer3.0.conv2.weight'], w.permute(3, 2, 0, 1))
    assert torch.equal(state['layer2.1.bn3.bias'], p('block_group_1/~/block_1/~/batchnorm_2', 'offset').flatten())
    assert torch.equal(state['layer4.0.downsample.0.weight'][:, :, 0, 0],
                       p('block_group_3/~/block_0/~/shortcut_conv', 'w')[0, 0].T)
    assert torch.equal(state['layer4.0.downsample.1.running_mean'],
                       s('block_group_3/~/block_0/~/shortcut_batchnorm', 'mean_ema', 'average').flatten())


@pytest.fixture(scope='module')
def r50_haiku():
    params, state = haiku_resnet('res_net50', R50)
    return params, state


@pytest.mark.parametrize('form', ['nested', 'nested-params-state', 'flat', 'flat-online-target'])
def test_every_layout_imports_into_mmpretrain(r50_haiku, form):
    params, hstate = r50_haiku
    params, hstate = dict(params), dict(hstate)
    heads(params, hstate)
    state, found = haiku_to_mmpretrain(layouts(params, hstate)[form])
    assert found.depth == 50 and found.network == 'res_net50'
    assert found.skipped == ['classifier', 'predictor', 'projector']
    assert ('nested' if form.startswith('nested') else 'flat') in found.layout
    if form == 'flat-online-target':
        assert "'target_params'" in found.layout and "'opt_state'" in found.layout
    check_values(state, params, hstate, 'res_net50')
    net = ResNetSamePadding(depth=50)
    net.load_state_dict(state, strict=True)


def test_cli_writes_a_tensor_only_file_that_mmpretrain_loads(tmp_path, r50_haiku):
    params, hstate = r50_haiku
    npy, out = str(tmp_path / 'resnet50_detcon_b_imagenet_1k.npy'), str(tmp_path / 'r50.pth')
    np.save(npy, {**params, **hstate}, allow_pickle=True)
    proc = run_tool([TOOL, npy, out])
    assert 'layout found: nested' in proc.stdout and "'res_net50': ResNet-50" in proc.stdout
    exported = torch.load(out, weights_only=True)
    from mmpretrain.models import ResNet
    for cls in (ResNet, ResNetSamePadding):
        net = cls(depth=50, init_cfg=dict(type='Pretrained', checkpoint=out))
        net.init_weights()
        for k, v in net.state_dict().items():
            assert torch.equal(v, exported[k]), k
    check_values(exported, params, hstate, 'res_net50')


def test_flat_npz_and_pickle_files(tmp_path, r50_haiku):
    params, hstate = r50_haiku
    npz, pkl = str(tmp_path / 'detcon.npz'), tmp_path / 'detcon.pkl'
    np.savez(npz, **flat({**params, **hstate}))
    import pickle
    pkl.write_bytes(pickle.dumps({'params': params, 'state': hstate}, protocol=2))
    for path in (npz, str(pkl)):
        state, found = haiku_to_mmpretrain(load_plain(path))
        assert found.depth == 50
        check_values(state, params, hstate, 'res_net50')


def test_resnet200_key_set(tmp_path):
    """The full ResNet-200 layout maps onto ResNetSamePadding(depth=200) (constant arrays, no random fill)."""
    params, hstate = haiku_resnet('res_net200', R200, shapes_only=True)
    state, found = haiku_to_mmpretrain({'params': params, 'state': hstate})
    assert found.depth == 200 and len(state) == len(ResNetSamePadding(depth=200).state_dict())
    assert state['layer3.35.conv3.weight'].shape == (1024, 256, 1, 1)
    assert 'layer2.23.bn2.running_var' in state and 'layer2.24.conv1.weight' not in state


def test_unknown_missing_and_misshaped_keys_are_listed():
    params, hstate = haiku_resnet('res_net50', R50, shapes_only=True)
    del params['res_net50/~/block_group_1/~/block_1/~/conv_0']
    params['res_net50/~/block_group_0/~/block_0/~/conv_1'] = {'w': np.zeros((3, 3, 64, 65), np.float32)}
    params['res_net50/~/block_group_3/~/block_1/~/conv_7'] = {'w': np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.raises(UserError) as e:
        haiku_to_mmpretrain({**params, **hstate})
    assert 'block_group_3/~/block_1/~/conv_7/w' in str(e.value)
    del params['res_net50/~/block_group_3/~/block_1/~/conv_7']
    with pytest.raises(UserError) as e:
        haiku_to_mmpretrain({**params, **hstate})
    msg = str(e.value)
    assert 'missing' in msg and 'layer2.1.conv1.weight' in msg
    assert 'mis-shaped' in msg and 'block_group_0/~/block_0/~/conv_1/w (65, 64, 3, 3) (expected (64, 64, 3, 3))' in msg
    other = {'some_net/~/linear/w': np.zeros(2)}
    with pytest.raises(UserError, match='no Haiku ResNet modules'):
        haiku_to_mmpretrain(other)
    with pytest.raises(UserError, match='not recognised.*some_net/~/linear/w'):
        haiku_to_mmpretrain({**params, **hstate, **other})


def test_resnet18_torso_has_a_shortcut_the_torch_resnet_lacks():
    """DetCon's torso projects the shortcut of every first block; torch's ResNet-18 has none in layer1."""
    params, hstate = haiku_resnet('res_net18', R18, bottleneck=False, shapes_only=True)
    with pytest.raises(UserError, match=r'ResNet-18.*unknown keys: .*block_group_0/~/block_0/~/shortcut_'):
        haiku_to_mmpretrain({**params, **hstate})


def test_several_networks_need_a_choice():
    a, sa = haiku_resnet('online/~/res_net50', R50, shapes_only=True)
    b, sb = haiku_resnet('target/~/res_net50', R50, shapes_only=True)
    both = {**a, **sa, **b, **sb}
    with pytest.raises(UserError, match="several networks.*'online/~/res_net50'.*--network"):
        haiku_to_mmpretrain(both)
    _, found = haiku_to_mmpretrain(both, network='online/~/res_net50')
    assert found.skipped == ['target/~/res_net50 (another network)']


def test_crafted_npy_is_refused_without_running_it(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    npy = str(tmp_path / 'evil.npy')
    np.save(npy, np.array({'initial_conv': {'w': Payload()}}, dtype=object), allow_pickle=True)
    np.load(npy, allow_pickle=True)  # numpy's own loader runs it: the file is a real attack
    assert marker.exists()
    marker.unlink()
    proc = run_tool([TOOL, npy, str(tmp_path / 'out.pth')], check=False)
    assert proc.returncode == 1 and 'refusing to unpickle' in proc.stderr and 'system' in proc.stderr
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()
    pkl = tmp_path / 'evil.pkl'  # the same payload as a bare pickle
    import pickle
    pkl.write_bytes(pickle.dumps({'w': Payload()}))
    with pytest.raises(UserError, match='refusing to unpickle'):
        load_plain(str(pkl))
    assert not marker.exists()


def test_same_padding_hand_cases():
    # TF SAME: out = ceil(n / s); total = (out - 1) * s + k - n; the odd pixel goes after.
    assert same_padding(8, 3, 2) == (0, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(8, 1, 2) == (0, 0)
    assert same_padding(5, 3, 1) == (1, 1)
    x = torch.arange(16.).reshape(1, 1, 4, 4)
    # windows start at rows/cols 0 and 2 (no padding before): max over [0..2] and [2..3] (+ -inf pad)
    assert MaxPool2dSamePadding()(x).flatten().tolist() == [10., 11., 14., 15.]
    assert torch.nn.MaxPool2d(3, 2, 1)(x).flatten().tolist() == [5., 7., 13., 15.]  # the stock stem


def test_haiku_forward_is_reproduced(tmp_path):
    """A random Haiku ResNet-50 (DetCon's torso) and the imported ResNetSamePadding agree at res2-res5."""
    import importlib.util
    for module, package in (('jax', 'jax'), ('haiku', 'dm-haiku')):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f'{package} is not installed (pip install -r requirements/tests.txt)')
    images = np.random.default_rng(1).normal(size=(2, 64, 80, 3)).astype(np.float32)  # odd sizes at res5
    params, hstate = haiku_resnet('res_net50', R50, seed=2)  # random weights, affine BN and EMA statistics
    src, dst = str(tmp_path / 'in.npz'), str(tmp_path / 'out.npz')
    np.savez(src, images=images, **{f'{kind}|{m}|{n}': v for kind, tree in (('params', params), ('state', hstate))
                                    for m, leaves in tree.items() for n, v in leaves.items()})
    run_tool(['tests/haiku_reference.py', src, dst], timeout=300)  # JAX in its own process
    ref = np.load(dst)
    # Haiku's own names and shapes (traced, not run) equal the documented ones the tests build files from.
    real = {tuple(k.split('|')[1:]) + (tuple(ref[k]),) for k in ref.files if k.startswith('shape|')}
    assert real == {(kind, m, n, v.shape) for kind, tree in (('params', params), ('state', hstate))
                    for m, leaves in tree.items() for n, v in leaves.items()}
    expected = [ref[f'res{i}'] for i in range(2, 6)]

    state, _ = haiku_to_mmpretrain({'params': params, 'state': hstate})
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    from mmpretrain.models import ResNet
    for cls in (ResNetSamePadding, ResNet):
        net = cls(depth=50, out_indices=(0, 1, 2, 3))
        net.load_state_dict(state)
        net.eval()
        with torch.no_grad():
            feats = net(x)
        for stage, (f, e) in enumerate(zip(feats, expected), start=2):
            assert f.shape == e.shape, (cls.__name__, stage)
            rel = float((f - torch.from_numpy(e)).abs().max() / np.abs(e).max())
            if cls is ResNetSamePadding:
                assert rel <= 1e-4, f'res{stage}: relative error {rel:.2e}'
            else:  # the stock network's symmetric padding really differs
                assert rel > 1e-2, f'res{stage}: stock ResNet unexpectedly close ({rel:.2e})'


def _mmdet_ops_missing():
    try:
        import mmcv.ops  # noqa: F401
        return None
    except ImportError as e:
        return f'mmdet needs full mmcv with compiled ops (bash tools/install_mmcv.sh): {e}'


@pytest.mark.skipif(_mmdet_ops_missing() is not None, reason=str(_mmdet_ops_missing()))
@pytest.mark.parametrize('config', [SAME_R50, STOCK_R50], ids=['same', 'stock'])
def test_imported_file_loads_through_mmdet_init_cfg(tmp_path, r50_haiku, config):
    from mmengine.registry import DefaultScope, init_default_scope
    from mmdetcon.converters import save_backbone
    params, hstate = r50_haiku
    state, _ = haiku_to_mmpretrain({'params': params, 'state': hstate})
    out = str(tmp_path / 'r50.pth')
    save_backbone(state, out)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': out})
    with DefaultScope.overwrite_default_scope('mmdet'):
        init_default_scope('mmdet')
        from mmdet.registry import MODELS
        model = MODELS.build(cfg.model)
        model.backbone.init_weights()
    assert type(model.backbone).__name__ == ('ResNetSamePadding' if config == SAME_R50 else 'ResNet')
    loaded = model.backbone.state_dict()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


def _padding_gap_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('same_padding_gap',
                                                  osp.join(ROOT, 'tools', 'analysis', 'same_padding_gap.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_padding_gap_figures(tmp_path):
    import argparse
    import json
    tool = _padding_gap_tool()
    a = torch.randn(2, 8, 5, 6)
    same = tool.compare([a], [a.clone()])['res2']
    assert same['cell_mean'] == pytest.approx(1) and same['whole_map'] == pytest.approx(1)
    b = torch.randn(2, 8, 5, 6)
    b[..., 1:, 1:] = a[..., :-1, :-1]  # the stock map one cell later
    shifted = tool.compare([a], [b])['res2']
    assert shifted['shifted_one_cell_mean'] == pytest.approx(1) and shifted['cell_mean'] < 0.5
    out = tmp_path / 'gap.json'
    tool.main(argparse.Namespace(checkpoint='', depth=18, size=64, json=str(out)))
    stages = json.loads(out.read_text())['stages']
    assert list(stages) == ['res2', 'res3', 'res4', 'res5'] and stages['res5']['grid'] == '2x2'
    assert all(-1 <= f['cell_mean'] < 1 for f in stages.values())
