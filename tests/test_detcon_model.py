"""DetCon-B / DetCon-S models: build, one training step on random input (ResNet-18, 64 px, batch 2)."""
import copy

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from mmdetcon.registry import MODELS

BN = dict(type='BN')
BN1D = dict(type='BN1d')  # the MLPs normalise [rows, channels]


def _cfg(kind):
    neck = dict(type='DetConNeck', in_channels=512, hid_channels=64, out_channels=32, norm_cfg=BN1D)
    cfg = dict(
        backbone=dict(type='ResNet', depth=18, out_indices=(3, ), norm_cfg=BN,
                      zero_init_residual=True),
        neck=neck,
        num_samples=4,
        data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True))
    if kind == 'B':
        predictor = dict(type='NonLinearNeck', in_channels=32, hid_channels=64, out_channels=32,
                         with_bias=True, with_last_bn=False, with_avg_pool=False, norm_cfg=BN1D)
        cfg.update(type='DetConB', head=dict(type='DetConHead', predictor=predictor,
                                             loss=dict(type='DetConLoss')))
    else:
        cfg.update(type='DetConS', head=dict(type='DetConHead',
                                             loss=dict(type='DetConLoss', simclr=True)))
    return cfg


def _batch(size=64, single_segment=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
              for _ in range(2)]
    samples = []
    for _ in range(2):
        if single_segment:
            mask = torch.full((2, size, size), 3, dtype=torch.int32)
        else:  # blocky ids shared by both views, so that masks match across views
            mask = torch.randint(0, 5, (2, size // 16, size // 16), generator=g, dtype=torch.int32)
            mask = mask.repeat_interleave(16, 1).repeat_interleave(16, 2)
        samples.append(DataSample(mask=mask))
    return dict(inputs=inputs, data_samples=samples)


@pytest.fixture(autouse=True)
def _setup():
    MessageHub.get_current_instance().update_info('max_iters', 10)  # read by CosineEMA
    # Tiny tensors: extra intra-op threads only add synchronisation (restored afterwards).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _step(model, data):
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.1))
    return model.train_step(data, optim)


@pytest.mark.parametrize('single_segment', [False, True])
def test_detcon_b_trains(single_segment):
    model = MODELS.build(_cfg('B'))
    model.train()
    data = model.data_preprocessor(_batch(single_segment=single_segment), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == {'loss', 'masks_v1', 'masks_v2', 'matched_rows'}
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None and not p.requires_grad for p in model.target_net.parameters())
    if single_segment:
        assert losses['masks_v1'].item() == 1 and losses['matched_rows'].item() == 1
    # The first update copied the online network into the target.
    online = dict(model.backbone.named_parameters())
    for name, p in model.target_net.module[0].named_parameters():
        torch.testing.assert_close(p, online[name])


def test_detcon_b_train_steps_move_target():
    model = MODELS.build(_cfg('B'))
    log = _step(model, _batch())
    assert torch.isfinite(log['loss'])
    before = copy.deepcopy(model.target_net.module.state_dict())
    log = _step(model, _batch(seed=1))
    assert torch.isfinite(log['loss'])
    after = model.target_net.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if 'conv' in k)


def test_detcon_s_trains():
    model = MODELS.build(_cfg('S'))
    assert not hasattr(model, 'target_net') and model.head.predictor is None
    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    log = _step(model, _batch(single_segment=True))
    assert torch.isfinite(log['loss'])


def test_bad_inputs_raise_clear_errors():
    model = MODELS.build(_cfg('S'))
    data = model.data_preprocessor(_batch(), True)
    with pytest.raises(ValueError, match='data_samples\\[i\\].mask'):
        model.loss(data['inputs'], [DataSample() for _ in range(2)])
    with pytest.raises(ValueError, match='2 views'):
        model.loss(data['inputs'][:1], data['data_samples'])
    # 80 px: ResNet-18's last feature map is 3x3 and 80 is not a multiple of 3.
    data = model.data_preprocessor(_batch(size=80), True)
    with pytest.raises(ValueError, match='not divisible'):
        model.loss(data['inputs'], data['data_samples'])
