from .resnet_same_padding import MaxPool2dSamePadding, ResNetSamePadding  # noqa: F401
