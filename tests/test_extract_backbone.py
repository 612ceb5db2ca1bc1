"""The exported backbone holds exactly the online network's tensors and loads with weights_only=True."""
import pickle
import sys

import torch
from mmpretrain.models import ResNet

from conftest import run_tool


def test_extract_mmpretrain_and_detectron2_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv('MMDETCON_CACHE', str(tmp_path / 'cache'))
    online, target = ResNet(depth=18), ResNet(depth=18)
    for p in target.parameters():
        p.data.fill_(7.0)
    state = {f'backbone.{k}': v for k, v in online.state_dict().items()}
    state.update({f'target_net.module.0.{k}': v for k, v in target.state_dict().items()})
    state['neck.mlp.0.weight'] = torch.zeros(4, 4)
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': state, 'meta': {'epoch': 1}}, ckpt)

    out = str(tmp_path / 'backbone.pth')
    run_tool(['tools/model_converters/extract_backbone.py', ckpt, out])
    exported = torch.load(out, weights_only=True)
    assert set(exported) == set(online.state_dict())
    for k, v in online.state_dict().items():
        assert torch.equal(exported[k], v), k

    fresh = ResNet(depth=18, init_cfg=dict(type='Pretrained', checkpoint=out))
    fresh.init_weights()
    assert torch.equal(fresh.conv1.weight, online.conv1.weight)

    pkl = str(tmp_path / 'backbone.pkl')
    run_tool(['tools/model_converters/extract_backbone.py', ckpt, pkl, '--layout', 'detectron2'])
    with open(pkl, 'rb') as f:
        d2 = pickle.load(f)['model']
    # detectron2 names written out by hand for a few representative tensors
    expect = {
        'stem.conv1.weight': 'conv1.weight',
        'stem.conv1.norm.running_mean': 'bn1.running_mean',
        'res2.0.conv1.weight': 'layer1.0.conv1.weight',
        'res3.0.conv2.norm.bias': 'layer2.0.bn2.bias',
        'res3.0.shortcut.weight': 'layer2.0.downsample.0.weight',
        'res5.0.shortcut.norm.weight': 'layer4.0.downsample.1.weight',
    }
    for d2_key, key in expect.items():
        assert (d2[d2_key] == exported[key].numpy()).all(), d2_key
    assert len(d2) == len(exported)


def test_extract_reports_missing_prefix(tmp_path):
    ckpt = str(tmp_path / 'c.pth')
    torch.save({'state_dict': {'encoder.w': torch.ones(1)}}, ckpt)
    proc = run_tool(['tools/model_converters/extract_backbone.py', ckpt, str(tmp_path / 'o.pth')], check=False)
    assert proc.returncode == 1 and "no 'backbone.*' tensors" in proc.stderr and 'encoder' in proc.stderr
