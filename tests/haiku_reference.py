"""DetCon's ResNet-50 torso run by Haiku, in its own process (JAX starts threads that a later
``os.fork`` in the test suite could deadlock on).

``python tests/haiku_reference.py IN.npz OUT.npz``: IN holds ``images`` (NHWC) and the weights as
``params|<module>|<name>`` / ``state|<module>|<name>`` arrays; OUT gets ``res2``..``res5`` (NCHW, eval-mode
BN from the EMAs) and, for every leaf Haiku itself creates, ``shape|<params or state>|<module>|<name>``.
"""
import sys

import haiku as hk
import jax
import numpy as np

BLOCKS = (3, 4, 6, 3)
BN = dict(decay_rate=0.9, eps=1e-5, create_scale=True, create_offset=True)


class ResNet50(hk.Module):
    """DetCon's ``ResNetTorso`` (v1, ``return_pyramid=True``) restated; Haiku names it ``res_net50``."""

    def __init__(self):
        super().__init__()
        self.conv = hk.Conv2D(64, 7, stride=2, with_bias=False, padding='SAME', name='initial_conv')
        self.bn = hk.BatchNorm(name='initial_batchnorm', **BN)
        self.groups = [hk.nets.ResNet.BlockGroup(
            channels=256 * 2 ** i, num_blocks=n, stride=stride, bn_config=BN, resnet_v2=False,
            bottleneck=True, use_projection=True, name=f'block_group_{i}')
            for i, (n, stride) in enumerate(zip(BLOCKS, (1, 2, 2, 2)))]

    def __call__(self, x, is_training):
        x = jax.nn.relu(self.bn(self.conv(x), is_training))
        x = hk.max_pool(x, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1), padding='SAME')
        pyramid = []
        for group in self.groups:
            x = group(x, is_training, False)
            pyramid.append(x)
        return pyramid


def main(src: str, dst: str) -> None:
    data = np.load(src)
    images = data['images']
    trees = {'params': {}, 'state': {}}
    for key in data.files:
        if '|' in key:
            kind, module, name = key.split('|')
            trees[kind].setdefault(module, {})[name] = data[key]
    fn = hk.transform_with_state(lambda x, is_training: ResNet50()(x, is_training))
    real = jax.eval_shape(lambda key: fn.init(key, images, True), jax.random.PRNGKey(0))
    out = {f'shape|{kind}|{m}|{n}': np.array(v.shape, np.int64)
           for kind, tree in zip(('params', 'state'), real) for m, leaves in tree.items() for n, v in leaves.items()}
    feats, _ = jax.jit(fn.apply, static_argnums=4)(trees['params'], trees['state'], None, images, False)
    out.update({f'res{i}': np.asarray(f).transpose(0, 3, 1, 2) for i, f in enumerate(feats, start=2)})
    np.savez(dst, **out)


if __name__ == '__main__':
    main(*sys.argv[1:3])
