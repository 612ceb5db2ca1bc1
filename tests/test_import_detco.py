"""DetCo checkpoint import: OpenSelfSup/MoCo torch files and the detectron2 .pkl, safe loading, key checks."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmpretrain.models import ResNet

from conftest import run_tool
from mmdetcon.converters import detco_to_mmpretrain, load_plain, save_backbone
from mmdetcon.utils.cli import UserError

TOOL = 'tools/model_converters/import_detco.py'


@pytest.fixture(scope='module')
def r50():
    torch.manual_seed(0)
    net = ResNet(depth=50)
    for m in net.modules():  # non-default BN statistics, so that a missed buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(77)
    return {k: v.clone() for k, v in net.state_dict().items()}


def openselfsup_full(backbone):
    """OpenSelfSup's MoCo-style model: encoder_q = Sequential(backbone, neck), backbone = encoder_q[0]."""
    state = {}
    for k, v in backbone.items():
        state[f'encoder_q.0.{k}'] = v
        state[f'backbone.{k}'] = v
        state[f'encoder_k.0.{k}'] = torch.full_like(v, 3)  # the key encoder must not be picked
    state['encoder_q.1.mlp.0.weight'] = torch.zeros(2048, 2048)
    state['queue'] = torch.zeros(128, 16)
    return {'meta': {'epoch': 200, 'mmcv_version': '0.4.3', 'iter': np.int64(1000)}, 'state_dict': state}


def moco_ddp(backbone):
    """facebookresearch/moco: torchvision ResNet with an MLP fc, under DDP's module. prefix."""
    state = {f'module.encoder_q.{k}': v for k, v in backbone.items()}
    state.update({f'module.encoder_k.{k}': torch.zeros_like(v) for k, v in backbone.items()})
    state['module.encoder_q.fc.0.weight'] = torch.zeros(2048, 2048)
    state['module.encoder_q.fc.2.weight'] = torch.zeros(128, 2048)
    return {'epoch': 200, 'arch': 'resnet50', 'state_dict': state}


def detectron2_pkl(backbone):
    """convert-pretrain-to-detectron2.py's rules (MoCo/OpenSelfSup), restated: stem., resN, convK.norm, shortcut."""
    model = {}
    for k, v in backbone.items():
        new = k if 'layer' in k else 'stem.' + k
        for t in (1, 2, 3, 4):
            new = new.replace(f'layer{t}', f'res{t + 1}')
        for t in (1, 2, 3):
            new = new.replace(f'bn{t}', f'conv{t}.norm')
        new = new.replace('downsample.0', 'shortcut').replace('downsample.1', 'shortcut.norm')
        model[new] = v.numpy()
    return {'model': model, '__author__': 'OpenSelfSup', 'matching_heuristics': True}


@pytest.mark.parametrize('form', ['openselfsup', 'moco-ddp', 'bare', 'bare-legacy', 'detectron2'])
def test_released_forms_import_into_mmpretrain(tmp_path, r50, form):
    path = str(tmp_path / 'detco_200ep_AA.pkl')  # the released files are named .pkl whatever their format
    if form == 'detectron2':
        with open(path, 'wb') as f:
            pickle.dump(detectron2_pkl(r50), f)
    elif form == 'bare-legacy':
        torch.save({'state_dict': r50}, path, _use_new_zipfile_serialization=False)
    else:
        obj = {'openselfsup': openselfsup_full, 'moco-ddp': moco_ddp, 'bare': lambda s: s}[form](r50)
        torch.save(obj, path)
    state, layout = detco_to_mmpretrain(load_plain(path))
    expect = {'openselfsup': "prefix 'encoder_q.0.'", 'moco-ddp': "prefix 'module.encoder_q.'",
              'bare': "prefix ''", 'bare-legacy': "prefix ''", 'detectron2': 'detectron2 names'}[form]
    assert layout.startswith(expect), layout
    assert list(state) == list(r50)
    for k, v in r50.items():
        assert torch.equal(state[k], v), k
    net = ResNet(depth=50)
    net.load_state_dict(state, strict=True)


def test_cli_round_trip_through_the_detectron2_export(tmp_path, r50):
    src = str(tmp_path / 'detco_200ep.pth')
    torch.save(openselfsup_full(r50), src)
    out, d2 = str(tmp_path / 'r50.pth'), str(tmp_path / 'r50.pkl')
    proc = run_tool([TOOL, src, out])
    assert "layout found: prefix 'encoder_q.0.'" in proc.stdout
    net = ResNet(depth=50, init_cfg=dict(type='Pretrained', checkpoint=out))
    net.init_weights()
    for k, v in net.state_dict().items():
        assert torch.equal(v, r50[k]), k
    save_backbone(detco_to_mmpretrain(load_plain(src))[0], d2, 'detectron2')  # = the tool's --layout detectron2
    state, layout = detco_to_mmpretrain(load_plain(d2))  # our detectron2 export reads back identically
    assert layout.startswith('detectron2') and all(torch.equal(state[k], v) for k, v in r50.items())


def test_bad_files_are_named(tmp_path, r50):
    d2 = detectron2_pkl(r50)
    del d2['model']['res4.3.conv2.weight']
    d2['model']['res5.0.conv2.weight'] = np.zeros((512, 512, 1, 1), np.float32)
    d2['model']['roi_heads.box_predictor.cls_score.weight'] = np.zeros((81, 1024), np.float32)
    with pytest.raises(UserError) as e:
        detco_to_mmpretrain(d2)
    msg = str(e.value)
    assert 'roi_heads.box_predictor.cls_score.weight' in msg and 'layer3.3.conv2.weight' in msg
    assert 'res5.0.conv2.weight (512, 512, 1, 1) (expected (512, 512, 3, 3))' in msg
    with pytest.raises(UserError, match=r"no ResNet .* top-level names: encoder, neck"):
        detco_to_mmpretrain({'state_dict': {'encoder.w': torch.ones(1), 'neck.w': torch.ones(1)}})

    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps({'model': {'x': Payload()}}))
    torch.save({'state_dict': {'x': Payload()}}, str(tmp_path / 'evil.pth'))
    for name in ('evil.pkl', 'evil.pth'):
        with pytest.raises(UserError, match='refusing to unpickle'):
            load_plain(str(tmp_path / name))
        assert not marker.exists(), name
