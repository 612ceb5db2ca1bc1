"""Checkpoints load through a restricted unpickler: everything a training checkpoint holds, nothing that runs
code. Crafted files are refused with one line naming the file and the global, and nothing in them runs."""
import collections
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import CheckpointLoader

from mmdetcon.engine.checkpoint import UnsafeCheckpointError, load_local_checkpoint


class Unknown:
    """A class of this test module: not something a checkpoint may construct."""

    def __init__(self, x=0):
        self.x = x


class _Reduce:
    """Pickles as ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _runner_like_state():
    """What mmengine's Runner saves: tensors, a message hub with history buffers and numpy values,
    optimizer and scheduler states (MultiStepLR milestones are a Counter)."""
    hub = MessageHub('ckpt-test')
    for i in range(3):
        hub.update_scalar('train/loss', 1.5 - 0.1 * i)
    hub.update_info('iter', 12)
    hub.update_info('np_value', np.float64(0.25))
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return dict(meta=dict(epoch=1, iter=12, seed=7, dataset_meta=dict(classes=('a', 'b'))),
                state_dict=collections.OrderedDict(model.state_dict()),
                message_hub=hub.state_dict(), optimizer=opt.state_dict(),
                param_schedulers=[dict(milestones=collections.Counter([3, 5]), last_step=2,
                                       base_values=[0.1])],
                extra=dict(arr=np.arange(6, dtype=np.int16).reshape(2, 3), size=torch.Size([2, 3]),
                           dtype=torch.float16, device=torch.device('cpu'), param=nn.Parameter(torch.ones(2))))


def test_tensor_files_load_with_torch_weights_only(tmp_path, monkeypatch):
    path = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': {'conv.weight': torch.randn(2, 3)}, 'meta': {'epoch': 3}}, path)
    calls, real = [], torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(k.get('weights_only')) or real(*a, **k))
    assert torch.equal(load_local_checkpoint(path)['state_dict']['conv.weight'],
                       real(path)['state_dict']['conv.weight'])
    assert calls == [True]


def test_runner_checkpoint_loads_with_every_part(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    state = _runner_like_state()
    torch.save(state, path)
    loaded = load_local_checkpoint(path)
    assert loaded['meta'] == state['meta']
    for key, value in state['state_dict'].items():
        assert torch.equal(loaded['state_dict'][key], value)
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(1.4) and buf.current() == pytest.approx(1.3)
    assert buf.statistics('max') == pytest.approx(1.5)  # the statistics methods came through getattr
    assert loaded['message_hub']['runtime_info']['np_value'] == 0.25
    assert loaded['param_schedulers'][0]['milestones'] == collections.Counter([3, 5])
    assert torch.equal(loaded['optimizer']['state'][0]['momentum_buffer'],
                       state['optimizer']['state'][0]['momentum_buffer'])
    extra = loaded['extra']
    assert np.array_equal(extra['arr'], state['extra']['arr']) and extra['arr'].dtype == np.int16
    assert extra['size'] == torch.Size([2, 3]) and extra['dtype'] is torch.float16
    assert isinstance(extra['param'], nn.Parameter)
    # The legacy (non-zip) format goes through the same unpickler.
    legacy = str(tmp_path / 'legacy.pth')
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert load_local_checkpoint(legacy)['message_hub']['log_scalars']['train/loss'].mean() == \
        pytest.approx(1.4)


def _assert_refused(path, marker, found):
    with pytest.raises(UnsafeCheckpointError) as info:
        load_local_checkpoint(str(path))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(path) in message and found in message, message
    assert not marker.exists(), 'code from the file ran'


def test_reduce_to_os_system_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _Reduce(os.system, (f'touch {marker}',))}, path)
    _assert_refused(path, marker, 'posix.system')
    torch.save({'x': _Reduce(os.system, (f'touch {marker}',))}, path, pickle_protocol=4)  # STACK_GLOBAL
    _assert_refused(path, marker, 'posix.system')
    # Control: the same file with full unpickling would have run the command.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_getattr_admits_only_history_buffer_statistics(tmp_path):
    marker = tmp_path / 'marker'
    # getattr(os, 'system')(...) needs the os module first: refused at that global.
    raw = (b'c__builtin__\ngetattr\n(c__builtin__\n__import__\n(Vos\ntRVsystem\ntR(V'
           + f'touch {marker}'.encode() + b'\ntR.')
    path = tmp_path / 'getattr_os.pth'
    path.write_bytes(raw)
    _assert_refused(path, marker, 'builtins.__import__')
    # getattr on an allowed class, but an attribute other than a statistics method.
    path = tmp_path / 'getattr_hb.pth'
    path.write_bytes(b'c__builtin__\ngetattr\n(cmmengine.logging.history_buffer\nHistoryBuffer\n'
                     b'Vregister_statistics\ntR.')
    _assert_refused(path, marker, "getattr(HistoryBuffer, 'register_statistics')")
    # getattr chained to reach a function's module globals (and from there os).
    path.write_bytes(b'c__builtin__\ngetattr\n(c__builtin__\ngetattr\n(cmmengine.logging.history_buffer\n'
                     b'HistoryBuffer\nVmean\ntRV__globals__\ntR.')
    _assert_refused(path, marker, "getattr(HistoryBuffer.mean, '__globals__')")


def test_unknown_class_is_refused(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'unknown.pth'
    torch.save({'obj': Unknown(3)}, path)
    _assert_refused(path, marker, 'test_checkpoint.Unknown')


def test_mmengine_entry_points_use_the_loader(tmp_path):
    """``load_from``/``--resume`` (Runner.load_checkpoint) and ``Pretrained`` init_cfgs all go through
    CheckpointLoader, whose loader for local paths is the restricted one."""
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Reduce(os.system, (f'touch {marker}',))}, evil)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        CheckpointLoader.load_checkpoint(str(evil))
    from mmengine.model import BaseModule

    class Net(BaseModule):
        def __init__(self, ckpt):
            super().__init__(init_cfg=dict(type='Pretrained', checkpoint=ckpt))
            self.fc = nn.Linear(2, 2)

    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        Net(str(evil)).init_weights()
    assert not marker.exists()
    good = tmp_path / 'good.pth'
    source = nn.Linear(2, 2)
    torch.save({'state_dict': {f'fc.{k}': v for k, v in source.state_dict().items()},
                'meta': {'arr': np.ones(2)}}, good)
    net = Net(str(good))
    net.init_weights()
    assert torch.equal(net.fc.weight, source.weight)


def test_safe_pickle_is_a_torch_pickle_module(tmp_path):
    from mmdetcon.engine import safe_pickle
    assert safe_pickle.loads(pickle.dumps({'a': [1, 2.5, 'x', (None, True)]}, protocol=2)) == \
        {'a': [1, 2.5, 'x', (None, True)]}
    with pytest.raises(pickle.UnpicklingError, match='builtins.eval'):
        safe_pickle.loads(pickle.dumps(eval, protocol=2))


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        load_local_checkpoint(str(tmp_path / 'absent.pth'))


def test_empty_path_says_what_to_set():
    with pytest.raises(FileNotFoundError, match='init_cfg.checkpoint'):
        load_local_checkpoint('')
