"""tools/analysis/gpu_check.py: the tiny CPU run (every row, exit 0), and a failing check giving a non-zero exit."""
import json
import math
import os.path as osp
import sys

import pytest
import torch

from conftest import ROOT, run_tool

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import gpu_check  # noqa: E402

ROWS = ['pair DetCon-B / BYOL', 'pair DetCon-S / SimCLR', 'pair DetCo / MoCoV2', 'sync-free step DetCon-B',
        'sync-free step DetCon-S', 'sync-free step DetCo', 'mmcv op', 'DDP DetCon-B']


def test_cpu_run_prints_every_row_and_exits_zero(tmp_path):
    out = tmp_path / 'rows.json'
    proc = run_tool(['tools/analysis/gpu_check.py', '--device', 'cpu', '--json', str(out)], timeout=900)
    assert not proc.stdout.startswith('\n')
    table = proc.stdout.strip().splitlines()  # the table only: logs go to stderr
    assert table[0].startswith('gpu_check: cpu x 2') and 'resnet18, 64 px, batch 2' in table[0]
    assert table[1].split()[:3] == ['check', 'fp32', 'time']
    assert [next(r for r in ROWS if line.startswith(r)) for line in table[3:]] == ROWS
    rows = {r['check']: r for r in json.loads(out.read_text())['rows']}
    assert list(rows) == ROWS
    for name in ROWS[:3]:  # both precisions measured; each ratio is the algorithm's figure over the baseline's
        row = rows[name]
        assert row['status'] == 'ok: losses finite'
        for prec in ('fp32', 'amp'):
            d = row[f'{prec}_detail']
            assert row[f'{prec}_time'] == pytest.approx(d['alg_ms'] / d['base_ms'])
            assert row[f'{prec}_mem'] == pytest.approx(d['alg_mib'] / d['base_mib'])
            assert all(math.isfinite(v) and v > 0 for v in d.values())
    # the DetCo step does more than MoCo v2's: 18 patches through the backbone, 4 stages of heads and 8 queues
    assert rows['pair DetCo / MoCoV2']['fp32_detail']['alg_mib'] > rows['pair DetCo / MoCoV2']['fp32_detail'][
        'base_mib']
    for name in ROWS[3:6]:
        assert rows[name]['status'].startswith('skip: torch.cuda.set_sync_debug_mode needs CUDA')
        assert '-' == table[3 + ROWS.index(name)].split()[3]
    assert rows['mmcv op']['status'] == 'ok: roi_align, nms on cpu'
    assert rows['DDP DetCon-B']['status'].startswith('ok: 2 ranks (gloo), 2 steps, losses finite and equal')
    assert '[gpu_check] DDP DetCon-B' in proc.stderr  # per-check progress on stderr


def _wrong_nms(boxes, scores, iou_threshold, *args, **kwargs):
    keep = torch.arange(len(boxes), device=boxes.device)  # suppresses nothing
    return torch.cat([boxes, scores[:, None]], 1), keep


def _wrong_roi_align(feat, rois, output_size, *args, **kwargs):
    return torch.zeros(len(rois), feat.shape[1], *output_size, device=feat.device)


@pytest.mark.parametrize('op, fake, message', [('nms', _wrong_nms, 'nms on cpu kept [0, 1, 2], expected [0, 2]'),
                                               ('roi_align', _wrong_roi_align, 'roi_align on cpu: ')])
def test_failing_check_gives_nonzero_exit(monkeypatch, capsys, op, fake, message):
    import mmcv.ops
    monkeypatch.setattr(mmcv.ops, op, fake)
    assert gpu_check.main(['--device', 'cpu', '--checks', 'mmcv']) == 1
    out, err = capsys.readouterr()
    row = out.strip().splitlines()[-1]
    assert row.startswith('mmcv op') and f'FAIL: {message}' in row
    assert 'gpu_check: 1 check(s) failed: mmcv op' in err


def test_real_mmcv_check_passes_in_process(capsys):
    assert gpu_check.main(['--device', 'cpu', '--checks', 'mmcv']) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith('ok: roi_align, nms on cpu')


def test_cuda_without_a_gpu_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert gpu_check.main([]) == 2
    assert 'run with --device cpu' in capsys.readouterr().err


def test_help_documents_the_checks(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(['--help'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert '--device {cuda,cpu}' in text and "set_sync_debug_mode('error')" in text and 'docs/benchmark.md' in text


def test_sync_culprit_names_the_first_frame_outside_torch():
    def caller():
        torch.empty(2).view(3)  # raises inside torch

    with pytest.raises(RuntimeError) as exc:
        caller()
    assert gpu_check.sync_culprit(exc.value).startswith('tests/test_gpu_check.py:') and \
        gpu_check.sync_culprit(exc.value).endswith('in caller')


def test_trainees_use_the_configs_optimizer_and_the_amp_wrapper_of_train_py():
    from mmdetcon.engine import CPUAmpOptimWrapper
    from mmdetcon.engine.optimizers import ForeachLARS
    gpu_check._setup_scope()
    scale = dict(gpu_check.CPU_SCALE)
    cfg, optim_cfg = gpu_check.algorithm_model_cfg('detcon-b', scale)
    assert cfg['type'] == 'DetConB' and cfg['backbone']['depth'] == 18 and cfg['neck']['in_channels'] == 512
    assert cfg['neck']['hid_channels'] == cfg['head']['predictor']['hid_channels'] == 512
    data = gpu_check.synthetic_data('detcon-b', 2, 64, 0, pin=False)
    assert data['masks'].shape == (2, 2, 64, 64) and data['masks'].dtype == torch.int32
    cpu = torch.device('cpu')
    fp32 = gpu_check.Trainee(cfg, optim_cfg, data, cpu, amp=False)
    amp = gpu_check.Trainee(cfg, optim_cfg, data, cpu, amp=True)
    assert type(fp32.optim).__name__ == 'OptimWrapper' and isinstance(amp.optim, CPUAmpOptimWrapper)
    assert isinstance(fp32.optim.optimizer, ForeachLARS) and isinstance(amp.optim.optimizer, ForeachLARS)
    detco, detco_optim = gpu_check.algorithm_model_cfg('detco', scale)
    assert detco['queue_len'] == 256 and detco['neck']['in_channels'] == (64, 128, 256, 512)
    assert detco_optim['optimizer']['type'] == 'SGD'


def test_sync_culprit_adds_the_torch_frame_when_torch_python_code_raised():
    def caller():
        torch.nn.functional.linear(torch.empty(2, 3), torch.empty(4, 5))  # raises in C++

    def caller_py():  # raises inside torch's Python code
        torch.nn.functional.normalize(torch.empty(2, 3), p=2, dim=5)

    for fn, via in ((caller, False), (caller_py, True)):
        with pytest.raises((RuntimeError, IndexError)) as exc:
            fn()
        culprit = gpu_check.sync_culprit(exc.value)
        assert culprit.startswith('tests/test_gpu_check.py:') and f'in {fn.__name__}' in culprit
        assert (' via ' in culprit) == via, culprit
        if via:  # the torch frame's file lies in torch's package directory
            path = culprit.split(' via ')[-1].rsplit(':', 1)[0]
            assert osp.abspath(osp.join(ROOT, path)).startswith(osp.dirname(torch.__file__)), culprit
