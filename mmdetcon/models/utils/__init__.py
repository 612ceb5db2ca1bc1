from .gather import concat_all_gather, gather_with_grad
from .batch_shuffle import batch_shuffle_multi, batch_unshuffle_multi
from .mask_pooling import downsample_masks, pool_masks, sample_mask_ids
from .queue import FeatureQueues

__all__ = ['concat_all_gather', 'gather_with_grad', 'downsample_masks', 'sample_mask_ids', 'pool_masks',
           'FeatureQueues', 'batch_shuffle_multi', 'batch_unshuffle_multi']
