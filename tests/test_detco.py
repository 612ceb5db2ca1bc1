"""DetCo: loss maths, patch regrouping, neck, model step and state (single process, CPU)."""
import importlib
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



def _ce_restatement(q_g, k_g, q_l, k_l, queue_g, queue_l, tau, weights):
    """Eq. 1/2/4/5 with F.cross_entropy on explicit [N, 1+K] logits (autograd gives the gradients)."""
    def ce(q, k, queue):
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue], dim=1) / tau
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))
    return sum(w * (ce(q_g[i], k_g[i], queue_g[i]) + ce(q_l[i], k_l[i], queue_l[i]) + ce(q_l[i], k_g[i], queue_g[i]))
               for i, w in enumerate(weights))


def _with_grad(tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def test_detco_loss_gradients_match_cross_entropy_restatement():
    """Gradients for queries and keys (the queue is a constant) against autograd through cross-entropy."""
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs(seed=3)
    ours = [_with_grad(x) for x in (q_g, k_g, q_l, k_l)]
    ref = [_with_grad(x) for x in (q_g, k_g, q_l, k_l)]
    total, _ = detco_loss(*ours, queue_g, queue_l, temperature=0.2, stage_weights=WEIGHTS)
    expected = _ce_restatement(*ref, queue_g, queue_l, 0.2, WEIGHTS)
    total.backward()
    expected.backward()
    assert torch.allclose(total, expected, atol=1e-12)
    for group, ref_group in zip(ours, ref):
        for t, r in zip(group, ref_group):
            assert torch.allclose(t.grad, r.grad, atol=1e-12)
    with torch.no_grad():  # no gradient wanted: same values
        again, _ = detco_loss(*ours, queue_g, queue_l, temperature=0.2, stage_weights=WEIGHTS)
    assert torch.allclose(again, total, atol=1e-12) and not again.requires_grad


def test_enqueue_before_backward_keeps_the_gradients():
    """The queues are read without a copy: overwriting them in place (as the model's enqueue does)
    between forward and backward must leave the gradients those of the queues the forward saw."""
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs(seed=4)
    queues_g, queues_l = [q.clone() for q in queue_g], [q.clone() for q in queue_l]
    q_g = _with_grad(q_g)
    total, _ = detco_loss(q_g, k_g, q_l, k_l, queues_g, queues_l)
    for queue in queues_g + queues_l:
        queue.mul_(-1)  # in place, as FeatureQueues.enqueue writes
    total.backward()
    ref = _with_grad(q_g)
    _ce_restatement(ref, k_g, q_l, k_l, queue_g, queue_l, 0.2, WEIGHTS).backward()
    for t, r in zip(q_g, ref):
        assert torch.allclose(t.grad, r.grad, atol=1e-12)


def test_detco_loss_logits_in_float32_under_autocast(monkeypatch):
    """Under CPU bf16 autocast the queue products and positives are float32: the loss equals the fp32
    loss of the same bf16-rounded embeddings to float32 precision."""
    module = importlib.import_module('mmdetcon.models.losses.detco_loss')
    q_g, k_g, q_l, k_l, queue_g, queue_l = _random_inputs(n=8, d=32, k=512, seed=5)
    emb = [[t.to(torch.bfloat16) for t in group] for group in (q_g, k_g, q_l, k_l)]
    queues = [[q.float() for q in group] for group in (queue_g, queue_l)]
    seen = []
    forward = module._QueueNCE.forward

    def recording(ctx, q, k, queue, grad_enabled):
        rows = forward(ctx, q, k, queue, grad_enabled)
        seen.append((q.dtype, k.dtype, queue.dtype, rows.dtype))
        return rows

    monkeypatch.setattr(module._QueueNCE, 'forward', staticmethod(recording))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        total, parts = detco_loss(*emb, *queues)
    assert seen and set(seen) == {(torch.float32, ) * 4}
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in parts.values())
    expected, _ = detco_loss(*[[t.float() for t in group] for group in emb], *queues)
    assert torch.allclose(total, expected, rtol=1e-6, atol=0)
    # A bf16 queue product would be off by far more than that.
    bf16_logits = (emb[0][0] / 0.2) @ queues[0][0].to(torch.bfloat16)
    assert (bf16_logits.float() - (emb[0][0].float() / 0.2) @ queues[0][0]).abs().max() > 1e-3


def test_detco_loss_and_enqueue_compile_without_graph_breaks():
    from mmdetcon.models.utils import FeatureQueues
    q_g, k_g, q_l, k_l, queue_g, queue_l = [[t.float() for t in group] for group in _random_inputs(seed=6)]
    explained = torch._dynamo.explain(detco_loss)(q_g, k_g, q_l, k_l, queue_g, queue_l)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(detco_loss, fullgraph=True, backend='eager')
    eager_q, compiled_q = _with_grad(q_l), _with_grad(q_l)
    eager, eager_parts = detco_loss(q_g, k_g, eager_q, k_l, queue_g, queue_l)
    total, parts = compiled(q_g, k_g, compiled_q, k_l, queue_g, queue_l)
    eager.backward()
    total.backward()
    assert torch.allclose(total, eager, atol=1e-6)
    assert all(torch.allclose(parts[key], eager_parts[key], atol=1e-6) for key in eager_parts)
    assert all(torch.allclose(c.grad, e.grad, atol=1e-6) for c, e in zip(compiled_q, eager_q))

    torch.manual_seed(0)
    queues = FeatureQueues(['a', 'b'], 16, 12)
    reference = FeatureQueues(['a', 'b'], 16, 12)
    reference.load_state_dict(queues.state_dict())
    keys = [{name: F.normalize(torch.randn(5, 16), dim=1) for name in ('a', 'b')} for _ in range(3)]
    explained = torch._dynamo.explain(FeatureQueues(['a', 'b'], 16, 12).enqueue)(keys[0])
    assert explained.graph_break_count == 0, explained.break_reasons
    enqueue = torch.compile(queues.enqueue, fullgraph=True, backend='eager')
    for step in keys:  # 3 x 5 keys into 12 columns: wraps
        enqueue(step)
        reference.enqueue(step)
        for key, value in reference.state_dict().items():
            assert torch.equal(queues.state_dict()[key], value), key


def test_detco_training_step_has_no_graph_break():
    """The whole loss step (EMA update, shuffle-BN, both encoders, loss, enqueue) traces as one graph:
    no ``.item()``, ``int(tensor)``, tensor-valued branch or boolean indexing anywhere in it."""
    torch.manual_seed(0)
    model = _tiny_detco()
    explained = torch._dynamo.explain(model.loss)(_tiny_inputs(n=2, size=32, patch=16), None)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert model.queues.ptr.tolist() == [2] and int(model.encoder_k.steps) == 1


def test_momentum_update_equals_mmengine_ema():
    """DetCo's device-side update equals mmengine's ExponentialMovingAverage.update_parameters bit for bit:
    a copy at the first update (here after the online weights were re-initialised), lerp afterwards."""
    import copy
    torch.manual_seed(0)
    model = _tiny_detco()
    reference = copy.deepcopy(model.encoder_k)
    online = torch.nn.Sequential(model.backbone, model.neck)
    model.init_weights()  # the runner re-initialises after build: the first update must copy
    for step in range(3):
        with torch.no_grad():
            for p in online.parameters():
                p.add_(torch.randn_like(p), alpha=0.01)
            for b in online.buffers():
                b.add_(1)
        reference.update_parameters(online)
        model._momentum_update()
        for (key, value), ref in zip(model.encoder_k.state_dict().items(), reference.state_dict().values()):
            assert torch.equal(value, ref), (step, key)
    assert int(model.encoder_k.steps) == 3


def test_batched_patches_equal_per_patch_passes():
    """One backbone pass over the 9*N image-major patches gives each image the local embedding of 9
    separate per-slot passes (eval-mode BN, so the batch composition does not matter)."""
    torch.manual_seed(0)
    model = _tiny_detco()
    model.eval()
    n = 3
    views = torch.randn(n, 3, 32, 32)
    patches = torch.randn(n, 9, 3, 16, 16)
    with torch.no_grad():
        q_global, q_local = model._encode(model.backbone, model.neck, views, patches)
        per_slot = [model.backbone(patches[:, slot]) for slot in range(9)]  # 9 x stages x [N, C, h, w]
        for stage, head in enumerate(model.neck.local_heads):
            vec = torch.cat([feats[stage].mean(dim=(2, 3)) for feats in per_slot], dim=1)  # [N, 9*C]
            assert torch.allclose(q_local[stage], F.normalize(head.mlp(vec), dim=1), atol=1e-5)
            ref_global = F.normalize(model.neck.global_heads[stage]((model.backbone(views)[stage], ))[0], dim=1)
            assert torch.allclose(q_global[stage], ref_global, atol=1e-5)
