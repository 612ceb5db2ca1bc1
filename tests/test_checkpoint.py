"""Full unpickling only for checkpoints signed by this user's runs; everything else is weights_only."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.runner import CheckpointLoader

from mmdetcon.engine.checkpoint import (UntrustedCheckpointError, is_trusted, load_local_checkpoint,
                                        sign_checkpoint)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MMDETCON_CACHE', str(tmp_path / 'cache'))


def _pickled(path):
    # numpy objects need full unpickling, as mmengine's message hub and history buffers do.
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'arr': np.arange(3)}}, path)


def test_tensor_only_file_loads_without_signature(tmp_path):
    path = str(tmp_path / 'weights.pth')
    torch.save({'conv.weight': torch.randn(2, 3)}, path)
    assert not is_trusted(path)
    assert torch.equal(load_local_checkpoint(path)['conv.weight'], torch.load(path)['conv.weight'])


def test_unsigned_pickle_is_refused_with_advice(tmp_path):
    path = str(tmp_path / 'foreign.pth')
    _pickled(path)
    with pytest.raises(UntrustedCheckpointError, match='foreign.pth.*trust_checkpoint'):
        load_local_checkpoint(path)
    # mmengine's own entry point (load_from, Pretrained) goes through the same loader.
    with pytest.raises(UntrustedCheckpointError):
        CheckpointLoader.load_checkpoint(path)


def test_signed_file_loads_and_tampering_revokes(tmp_path):
    path = str(tmp_path / 'run.pth')
    _pickled(path)
    sign_checkpoint(path)
    assert is_trusted(path)
    assert np.array_equal(load_local_checkpoint(path)['meta']['arr'], np.arange(3))
    with open(path, 'ab') as f:
        f.write(b'\0')
    assert not is_trusted(path)
    with pytest.raises((UntrustedCheckpointError, pickle.UnpicklingError, RuntimeError)):
        load_local_checkpoint(path)


def test_signature_is_keyed_per_user(tmp_path, monkeypatch):
    path = str(tmp_path / 'run.pth')
    _pickled(path)
    sign_checkpoint(path)
    monkeypatch.setenv('MMDETCON_CACHE', str(tmp_path / 'other_user'))
    assert not is_trusted(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        load_local_checkpoint(str(tmp_path / 'absent.pth'))


def test_empty_path_says_what_to_set():
    with pytest.raises(FileNotFoundError, match='init_cfg.checkpoint'):
        load_local_checkpoint('')
