"""DetCo: loss maths, patch regrouping, neck, model step and state (single process, CPU)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdetcon.models.losses import DetCoLoss, detco_loss
from mmdetcon.models.necks import DetCoNeck, regroup_patches
from mmdetcon.registry import MODELS

WEIGHTS = (0.1, 0.4, 0.7, 1.0)


def _unit(*shape, dtype=torch.float64):
    return F.normalize(torch.randn(*shape, dtype=dtype), dim=-1)


def _ref_infonce(q, k, queue, tau):
    """-log softmax of the positive, one sample at a time (float64)."""
    total = 0.0
    for n in range(q.shape[0]):
        logits = [torch.dot(q[n], k[n])] + [torch.dot(q[n], queue[:, j]) for j in range(queue.shape[1])]
        logits = torch.stack(logits) / tau
        total = total - torch.log_softmax(logits, dim=0)[0]
    return total / q.shape[0]


def _random_inputs(n=4, d=16, k=24, stages=4, seed=0):
    torch.manual_seed(seed)
    q_g = [_unit(n, d) for _ in range(stages)]
    # Positives correlated with their queries so the terms are not all ~log(K+1).
    k_g = [F.normalize(q + 0.5 * _unit(n, d), dim=1) for q in q_g]
    q_l = [F.normalize(q + 0.8 * _unit(n, d), dim=1) for q in q_g]
    k_l = [F.normalize(q + 0.5 * _unit(n, d), dim=1) for q in q_l]
    queue_g = [_unit(k, d).t().contiguous() for _ in range(stages)]
    queue_l = [_unit(k, d).t().contiguous() for _ in range(stages)]
    return q_g, k_g, q_l, k_l, queue_g, queue_l


def test_info_nce_hand_case():
    # q = k = e1, one negative e2, tau = 1: loss = -log(e / (e + 1)) = log(1 + e^-1).
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    queue = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    total, parts = detco_loss([q], [q], [q], [q], [queue], [queue], temperature=1.0, stage_weights=(1.0, ))
    assert parts['gg_s2'].item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-12)
    assert total.item() == pytest.approx(3 * math.log(1 + math.exp(-1)), abs=1e-12)


@pytest.mark.parametrize('tau', [0.2, 0.07])
def test_detco_loss_matches_float64_restatement(tau):
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs()
    total, parts = detco_loss(q_g, k_g, q_l, k_l, queue_g, queue_l, temperature=tau, stage_weights=WEIGHTS)
    expected_total = 0.0
    for i, w in enumerate(WEIGHTS):
        gg = _ref_infonce(q_g[i], k_g[i], queue_g[i], tau)
        ll = _ref_infonce(q_l[i], k_l[i], queue_l[i], tau)
        lg = _ref_infonce(q_l[i], k_g[i], queue_g[i], tau)  # local query, global key, global queue
        for name, ref in (('gg', gg), ('ll', ll), ('lg', lg)):
            assert torch.allclose(parts[f'{name}_s{i + 2}'], ref, atol=1e-12), (name, i)
        expected_total = expected_total + w * (gg + ll + lg)
    assert torch.allclose(total, expected_total, atol=1e-12)
    assert sorted(parts) == sorted(f'{t}_s{s}' for t in ('gg', 'll', 'lg') for s in (2, 3, 4, 5))


def test_cross_term_direction():
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs(seed=1)
    _, parts = detco_loss(q_g, k_g, q_l, k_l, queue_g, queue_l)
    for i in range(4):
        lg = parts[f'lg_s{i + 2}']
        swapped = _ref_infonce(k_g[i], q_l[i], queue_g[i], 0.2)  # global->local instead
        other_queue = _ref_infonce(q_l[i], k_g[i], queue_l[i], 0.2)  # local queue instead
        assert not torch.allclose(lg, swapped, atol=1e-6)
        assert not torch.allclose(lg, other_queue, atol=1e-6)


def test_detco_loss_validates_inputs():
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs()
    with pytest.raises(ValueError, match='q_local'):
        detco_loss(q_g, k_g, q_l[:3], k_l, queue_g, queue_l)
    with pytest.raises(ValueError, match=r'k_global\[1\]'):
        detco_loss(q_g, [k_g[0], k_g[1][:2]] + k_g[2:], q_l, k_l, queue_g, queue_l)
    with pytest.raises(ValueError, match='queue_local'):
        detco_loss(q_g, k_g, q_l, k_l, queue_g, [q.t() for q in queue_l])


def test_loss_module_logs_weighted_stage_sums():
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs(seed=2)
    q_g = [q.clone().requires_grad_() for q in q_g]
    out = DetCoLoss(temperature=0.2, stage_weights=WEIGHTS)(q_g, k_g, q_l, k_l, queue_g, queue_l)
    total, parts = detco_loss(q_g, k_g, q_l, k_l, queue_g, queue_l)
    loss_keys = [key for key in out if 'loss' in key]
    assert loss_keys == ['loss_s2', 'loss_s3', 'loss_s4', 'loss_s5']
    assert torch.allclose(sum(out[key] for key in loss_keys), total, atol=1e-12)
    for i, w in enumerate(WEIGHTS):
        s = f's{i + 2}'
        assert torch.allclose(out[f'loss_{s}'], w * (parts[f'gg_{s}'] + parts[f'll_{s}'] + parts[f'lg_{s}']))
        assert not out[f'gg_{s}'].requires_grad and out[f'loss_{s}'].requires_grad


def test_regroup_patches_image_major():
    n, p, c = 3, 9, 5
    x = torch.randn(p * n, c)
    out = regroup_patches(x, p)
    assert out.shape == (n, p * c)
    for img in range(n):
        for slot in range(p):
            assert torch.equal(out[img, slot * c:(slot + 1) * c], x[p * img + slot])
    with pytest.raises(ValueError):
        regroup_patches(torch.randn(10, c), p)


def test_neck_local_head_uses_slot_order_and_widths():
    torch.manual_seed(0)
    neck = DetCoNeck(in_channels=(4, 6), out_channels=8, num_patches=9, local_hid_channels=[5, 7])
    assert [h.mlp[0].out_features for h in neck.local_heads] == [5, 7]
    assert [h.mlp[0].in_features for h in neck.local_heads] == [36, 54]
    assert DetCoNeck(in_channels=(4, 6), local_hid_channels=9.0).local_hid_channels == [36, 54]
    n = 2
    feats = [torch.randn(9 * n, 4, 3, 3), torch.randn(9 * n, 6, 2, 2)]
    out = neck.forward_local(feats)
    for stage, f in enumerate(feats):
        for img in range(n):
            vec = torch.cat([f[9 * img + slot].mean(dim=(1, 2)) for slot in range(9)])
            ref = F.normalize(neck.local_heads[stage].mlp(vec[None]), dim=1)[0]
            assert torch.allclose(out[stage][img], ref, atol=1e-6)
    with pytest.raises(ValueError, match='channels'):
        neck.forward_local([torch.randn(9, 5, 2, 2), torch.randn(9, 6, 2, 2)])


def _tiny_detco(queue_len=8):
    return MODELS.build(dict(
        type='DetCo', queue_len=queue_len, feat_dim=16, momentum=0.001,
        backbone=dict(type='ResNet', depth=18, out_indices=(0, 1, 2, 3), norm_cfg=dict(type='BN'),
                      zero_init_residual=False),
        neck=dict(type='DetCoNeck', in_channels=(64, 128, 256, 512), out_channels=16, num_patches=9),
        head=dict(type='DetCoLoss', temperature=0.2)))


def _tiny_inputs(n=2, size=64, patch=24):
    return [torch.randn(n, 3, size, size) for _ in range(2)] + [torch.randn(n, 3, patch, patch) for _ in range(18)]


@pytest.fixture(scope='module')
def stepped():
    """A tiny DetCo after one loss() + backward (ResNet-18, batch 2, 64 px views, 24 px patches)."""
    torch.manual_seed(0)
    model = _tiny_detco()
    inputs = _tiny_inputs()
    before = {name: model.queues[name].clone() for name in model.queues.names}
    losses = model.loss(inputs, None)
    loss, _ = model.parse_losses(losses)
    loss.backward()
    return model, inputs, before, losses


def test_detco_loss_step_is_finite(stepped):
    _, _, _, losses = stepped
    assert sorted(k for k in losses if 'loss' in k) == ['loss_s2', 'loss_s3', 'loss_s4', 'loss_s5']
    assert len(losses) == 16 and all(torch.isfinite(v).all() for v in losses.values())


def test_detco_queues_advance_with_their_own_keys(stepped):
    model, inputs, before, _ = stepped
    assert int(model.queues.ptr) == 2
    for name in model.queues.names:  # columns 0..1 replaced, the rest untouched
        assert not torch.allclose(model.queues[name][:, :2], before[name][:, :2])
        assert torch.equal(model.queues[name][:, 2:], before[name][:, 2:])
    # Keys went to the right queues, back in image order after Shuffle-BN: recompute them with the
    # (already updated) key encoder; train-mode BN statistics do not depend on the batch order.
    backbone_k, neck_k = model.encoder_k.module
    with torch.no_grad():
        k_global, k_local = neck_k(backbone_k(inputs[1]),
                                   backbone_k(torch.stack(inputs[11:], dim=1).flatten(0, 1)))
    for i, s in enumerate(('s2', 's3', 's4', 's5')):
        assert torch.allclose(model.queues[f'global_{s}'][:, :2].t(), k_global[i], atol=1e-5)
        assert torch.allclose(model.queues[f'local_{s}'][:, :2].t(), k_local[i], atol=1e-5)


def test_detco_key_encoder_is_an_ema_without_grads(stepped):
    model = stepped[0]
    assert all(p.grad is None and not p.requires_grad for p in model.encoder_k.parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.neck.parameters())
    # EMA copied the query encoder (backbone and all 8 heads) at its first update, before the key forward.
    online = torch.nn.Sequential(model.backbone, model.neck).named_parameters()
    for (name_k, p_k), (name_q, p_q) in zip(model.encoder_k.module.named_parameters(), online):
        assert name_k == name_q and torch.equal(p_k, p_q.detach())


def test_detco_state_dict_keeps_queues(stepped):
    model = stepped[0]
    state = model.state_dict()
    assert int(state['queues.ptr']) == 2
    assert {f'queues.{kind}_s{i}' for kind in ('global', 'local') for i in (2, 3, 4, 5)} <= set(state)
    fresh = _tiny_detco()
    fresh.load_state_dict(state)
    assert int(fresh.queues.ptr) == 2
    assert torch.equal(fresh.queues['local_s4'], model.queues['local_s4'])


def test_detco_rejects_wrong_view_count():
    model = _tiny_detco()
    with pytest.raises(ValueError, match='20 views'):
        model.loss(_tiny_inputs()[:11], None)

