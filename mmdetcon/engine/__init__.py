from .checkpoint import (TrustedCheckpointRunner, UntrustedCheckpointError, is_trusted,
                         load_local_checkpoint, sign_checkpoint)

__all__ = ['TrustedCheckpointRunner', 'UntrustedCheckpointError', 'is_trusted',
           'load_local_checkpoint', 'sign_checkpoint']
