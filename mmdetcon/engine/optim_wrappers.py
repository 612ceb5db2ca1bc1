"""Mixed precision for ``tools/train.py --amp`` on any device.

mmengine's ``AmpOptimWrapper`` refuses to build without a GPU (or NPU/MLU/MUSA). On CPU,
:class:`CPUAmpOptimWrapper` runs the forward pass under ``torch.autocast('cpu', dtype=torch.bfloat16)``
with no loss scaling: bfloat16 has float32's 8 exponent bits, so gradients do not underflow where
float16's would; it has 8 bits of mantissa (relative rounding 2**-8 = 0.4 %). On an accelerator
:func:`amp_optim_wrapper_cfg` keeps mmengine's ``AmpOptimWrapper`` unchanged.
"""
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.optim import OptimWrapper

from mmdetcon.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward context is bfloat16 autocast on CPU; no ``GradScaler``.

    Parameters, gradients and optimizer state stay float32. Cannot: run a model on another device (use
    mmengine's ``AmpOptimWrapper`` there), or autocast to float16 (it would need loss scaling).

    Args:
        dtype: the autocast dtype; only ``'bfloat16'`` (or ``torch.bfloat16``).
        **kwargs: ``OptimWrapper``'s (optimizer, accumulative_counts, clip_grad).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f'CPUAmpOptimWrapper autocasts to bfloat16 only, got dtype={dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """``OptimWrapper``'s context (gradient accumulation) inside bfloat16 CPU autocast."""
        param = next(model.parameters(), None)
        if param is not None and param.device.type != 'cpu':
            raise RuntimeError(f'CPUAmpOptimWrapper autocasts on CPU, but the model is on {param.device}: '
                               "use mmengine's AmpOptimWrapper there")
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        """Load the optimizer's state; the loss scaler of a checkpoint saved by ``AmpOptimWrapper`` is
        dropped (nothing here scales the loss)."""
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)


def amp_optim_wrapper_cfg(optim_wrapper: dict, device: Optional[str] = None) -> Tuple[dict, str]:
    """The ``optim_wrapper`` config of ``--amp`` on ``device`` (default: mmengine's ``get_device()``) and a
    one-line description for the log.

    On CPU: :class:`CPUAmpOptimWrapper` (``loss_scale``/``use_fsdp``/a float16 ``dtype`` of an
    ``AmpOptimWrapper`` config are dropped). Elsewhere: mmengine's ``AmpOptimWrapper`` with
    ``loss_scale='dynamic'`` unless the config sets one.
    """
    device = device or get_device()
    cfg = dict(optim_wrapper)
    if device == 'cpu':
        for key in ('loss_scale', 'use_fsdp', 'dtype'):
            cfg.pop(key, None)
        cfg['type'] = 'CPUAmpOptimWrapper'
        return cfg, 'AMP: bf16 autocast on CPU, no loss scaling'
    cfg['type'] = 'AmpOptimWrapper'
    cfg.setdefault('loss_scale', 'dynamic')
    dtype = cfg.get('dtype')
    name = {None: 'float16', torch.float16: 'float16', torch.bfloat16: 'bfloat16'}.get(dtype, str(dtype))
    return cfg, f"AMP: {name} autocast on {device.upper()} with loss scaling ({cfg['loss_scale']})"
