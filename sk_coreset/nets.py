"""Architecture zoo: the networks of the DeepCore paper, CIFAR-size and ImageNet-size.

Every network built here is a :class:`Net`: ``features(x)`` returns the penultimate
embedding ``(N, d)``, ``classifier`` is the final :class:`torch.nn.Linear` and
``forward(x) == classifier(features(x))``.

Which variant is built depends on the image size. Images up to 64 pixels get a
CIFAR-style variant written here (ResNet with a 3x3 stride-1 stem and no max-pool,
pre-activation WideResNet, VGG with batch norm and a single linear head, a small
AlexNet, LeNet, an MLP; InceptionV3 and MobileNetV3 adapt torchvision's definitions
with stride-1 stems). Larger images get torchvision's ImageNet architectures, always
built with ``weights=None`` (nothing is downloaded). MLP, LeNet and the WideResNets
have no torchvision counterpart and use their own definition at every size.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

# torchvision.models is imported inside the builders that use it: importing it costs
# seconds, paid by every joblib or Dask worker that unpickles a selector otherwise.

__all__ = ["Net", "available_nets", "build_net"]

#: largest image side served by the CIFAR-style variants
SMALL_MAX = 64


class Net(nn.Module):
    """Base class of the zoo: ``forward(x) == classifier(features(x))``.

    Subclasses set ``self.classifier`` (an :class:`torch.nn.Linear`) and implement
    :meth:`features`.
    """

    classifier: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    @property
    def embedding_dim(self) -> int:
        """Width ``d`` of the penultimate embedding."""
        return self.classifier.in_features


# ----------------------------------------------------------------------------- MLP, LeNet
class MLP(Net):
    """Flatten, then 128 -> 128 hidden units with ReLU; any input size."""

    def __init__(self, n_classes: int, in_features: int, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, n_classes)

    def features(self, x):
        return self.body(x)


class LeNet(Net):
    """LeNet-5: conv5(6) -> pool -> conv5(16) -> pool -> 120 -> 84 -> C."""

    def __init__(self, n_classes: int, in_channels: int, size: tuple[int, int]):
        super().__init__()
        pad = 2 if min(size) < 32 else 0
        h, w = (((s + 2 * pad - 4) // 2 - 4) // 2 for s in size)
        if h < 1 or w < 1:
            raise ValueError(
                f"LeNet needs images of at least 13x13 pixels; got {size}. Use module='mlp' "
                "for smaller inputs."
            )
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * h * w, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(84, n_classes)

    def features(self, x):
        return self.body(x)


def _pad_to_32(size: tuple[int, int]) -> int:
    """Extra padding of a first 'same' conv so that images smaller than 32 reach 32."""
    return max(0, math.ceil((32 - min(size)) / 2))


# ----------------------------------------------------------------------------- AlexNet, VGG
class AlexNetSmall(Net):
    """AlexNet for small images: 5 convs, 3 max-pools, a 4x4x192 = 3072-d embedding."""

    def __init__(self, n_classes: int, in_channels: int, size: tuple[int, int]):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 128, 5, padding=2 + _pad_to_32(size)),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(192 * 16, n_classes)

    def features(self, x):
        return self.body(x)


_VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGGSmall(Net):
    """VGG with batch norm after every conv, 5 max-pools and a single Linear(512, C)."""

    def __init__(self, depth: int, n_classes: int, in_channels: int, size: tuple[int, int]):
        super().__init__()
        layers: list[nn.Module] = []
        channels, first = in_channels, True
        for v in _VGG_CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            pad = 1 + (_pad_to_32(size) if first else 0)
            layers += [nn.Conv2d(channels, v, 3, padding=pad), nn.BatchNorm2d(v), nn.ReLU(True)]
            channels, first = v, False
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, n_classes)

    def features(self, x):
        return self.body(x)


# ----------------------------------------------------------------------------- ResNet
class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _projection(cin, cout, stride)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _projection(cin, cout, stride)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


_RESNET_CFG = {
    18: (_BasicBlock, (2, 2, 2, 2)),
    34: (_BasicBlock, (3, 4, 6, 3)),
    50: (_Bottleneck, (3, 4, 6, 3)),
    101: (_Bottleneck, (3, 4, 23, 3)),
    152: (_Bottleneck, (3, 8, 36, 3)),
}


class ResNetSmall(Net):
    """CIFAR-style ResNet: 3x3 stride-1 stem, no max-pool, stages of 64..512 channels."""

    def __init__(self, depth: int, n_classes: int, in_channels: int):
        super().__init__()
        block, counts = _RESNET_CFG[depth]
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        ]
        cin = 64
        for width, count, stride in zip((64, 128, 256, 512), counts, (1, 2, 2, 2)):
            for i in range(count):
                layers.append(block(cin, width, stride if i == 0 else 1))
                cin = width * block.expansion
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, n_classes)

    def features(self, x):
        return self.body(x)


# ----------------------------------------------------------------------------- WideResNet
class _WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.project = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x):
        act = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(act))))
        # the projection sees the pre-activated input (Zagoruyko & Komodakis)
        return out + (x if self.project is None else self.project(act))


class WideResNet(Net):
    """WRN-depth-k: stages of 16k, 32k, 64k channels, strides 1, 2, 2; embedding 64k."""

    def __init__(self, depth: int, widen: int, n_classes: int, in_channels: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4; got {depth}.")
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)]
        cin = 16
        for width, stride in zip(widths, (1, 2, 2)):
            for i in range(n):
                layers.append(_WideBlock(cin, width, stride if i == 0 else 1))
                cin = width
        layers += [
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def features(self, x):
        return self.body(x)


# ----------------------------------------------------------------------------- torchvision
class TorchvisionNet(Net):
    """A torchvision architecture split into a body and its final linear layer.

    ``head`` is the dotted path of the final :class:`torch.nn.Linear` inside ``model``;
    it is replaced by an identity, so ``model`` itself returns the embedding.
    """

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        linear = model.get_submodule(head)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{head!r} of {type(model).__name__} is not an nn.Linear.")
        _set_submodule(model, head, nn.Identity())
        self.body = model
        self.classifier = linear

    def features(self, x):
        return self.body(x)


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def _replace_conv(root: nn.Module, path: str, in_channels=None, stride=None, padding=None):
    """Swap the conv at ``path`` for a fresh one with some settings changed."""
    old: nn.Conv2d = root.get_submodule(path)
    new = nn.Conv2d(
        old.in_channels if in_channels is None else in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride if stride is None else stride,
        old.padding if padding is None else padding,
        old.dilation,
        old.groups,
        bias=old.bias is not None,
    )
    _set_submodule(root, path, new)


def _inception(n_classes: int, in_channels: int, small: bool) -> Net:
    from torchvision import models as tvm

    model = tvm.inception_v3(
        weights=None, num_classes=n_classes, aux_logits=False, init_weights=True,
        transform_input=False,
    )
    if small:
        # stride-1 padded stem and no max-pools: 32x32 inputs reach Mixed_7 at 6x6
        _replace_conv(model, "Conv2d_1a_3x3.conv", in_channels=in_channels, stride=1, padding=1)
        model.maxpool1 = nn.Identity()
        model.maxpool2 = nn.Identity()
    elif in_channels != 3:
        _replace_conv(model, "Conv2d_1a_3x3.conv", in_channels=in_channels)
    return TorchvisionNet(model, "fc")


def _mobilenet(variant: str, n_classes: int, in_channels: int, small: bool) -> Net:
    from torchvision import models as tvm

    factory = tvm.mobilenet_v3_large if variant == "large" else tvm.mobilenet_v3_small
    model = factory(weights=None, num_classes=n_classes)
    if small or in_channels != 3:
        _replace_conv(model, "features.0.0", in_channels=in_channels, stride=1 if small else None)
    return TorchvisionNet(model, "classifier.3")


def _torchvision_plain(name: str, n_classes: int, in_channels: int) -> Net:
    """ResNet, VGG (batch norm) and AlexNet at ImageNet size."""
    from torchvision import models as tvm

    if name.startswith("resnet"):
        model, head, stem = getattr(tvm, name)(weights=None, num_classes=n_classes), "fc", "conv1"
    elif name.startswith("vgg"):
        model = getattr(tvm, name + "_bn")(weights=None, num_classes=n_classes)
        head, stem = "classifier.6", "features.0"
    else:
        model = tvm.alexnet(weights=None, num_classes=n_classes)
        head, stem = "classifier.6", "features.0"
    if in_channels != 3:
        _replace_conv(model, stem, in_channels=in_channels)
    return TorchvisionNet(model, head)


# ----------------------------------------------------------------------------- registry
_WRN = {"wrn168": (16, 8), "wrn2810": (28, 10), "wrn282": (28, 2)}
_ALIASES = {
    "mobilenetv3": "mobilenetv3large",
    "inception": "inceptionv3",
    "wideresnet168": "wrn168",
    "wideresnet2810": "wrn2810",
    "wideresnet282": "wrn282",
}
_CANONICAL = {
    "mlp": "MLP",
    "lenet": "LeNet",
    "alexnet": "AlexNet",
    **{f"vgg{d}": f"VGG{d}" for d in _VGG_CFG},
    "inceptionv3": "InceptionV3",
    **{f"resnet{d}": f"ResNet{d}" for d in _RESNET_CFG},
    "wrn168": "WRN-16-8",
    "wrn2810": "WRN-28-10",
    "wrn282": "WRN-28-2",
    "mobilenetv3large": "MobileNetV3-Large",
    "mobilenetv3small": "MobileNetV3-Small",
}


def available_nets() -> list[str]:
    """Names accepted by :func:`build_net` (matched case-insensitively, ignoring ``-_ ``)."""
    return list(_CANONICAL.values())


def _key(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return _ALIASES.get(key, key)


def build_net(
    name: str,
    n_classes: int,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
) -> Net:
    """Build an architecture of the zoo with random weights.

    Parameters
    ----------
    name : str
        One of :func:`available_nets`, case-insensitive (``"resnet18"``, ``"WRN-28-10"``,
        ``"mobilenetv3_small"``, ...).
    n_classes : int
        Width of the final linear layer.
    in_channels : int, default=3
        Image channels. For flat tabular inputs with ``name="mlp"`` pass the number of
        features and ``image_size=1``.
    image_size : int or (int, int), default=32
        Side of the (square) input images, or (height, width). Up to 64 pixels builds the
        CIFAR-style variant, larger sizes torchvision's ImageNet architecture.

    Returns
    -------
    Net
        ``features(x)`` gives the (N, d) embedding, ``classifier`` the final linear layer.

    Examples
    --------
    >>> import torch
    >>> from sk_coreset.nets import build_net
    >>> net = build_net("resnet18", n_classes=10, in_channels=3, image_size=32)
    >>> net.features(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 512])
    """
    key = _key(name)
    if key not in _CANONICAL:
        raise ValueError(
            f"Unknown network {name!r}; choose one of {available_nets()} (case-insensitive), "
            "or pass an nn.Module class or instance."
        )
    if int(n_classes) < 1 or int(in_channels) < 1:
        raise ValueError(
            f"n_classes and in_channels must be positive; got {n_classes} and {in_channels}."
        )
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width); got {image_size}.")
    return _build(key, int(n_classes), int(in_channels), size)


def _build(key: str, n_classes: int, in_channels: int, size: tuple[int, int]) -> Net:
    small = max(size) <= SMALL_MAX
    if key == "mlp":
        return MLP(n_classes, in_channels * size[0] * size[1])
    if key == "lenet":
        return LeNet(n_classes, in_channels, size)
    if key in _WRN:
        return WideResNet(*_WRN[key], n_classes, in_channels)
    if key == "inceptionv3":
        return _inception(n_classes, in_channels, small)
    if key.startswith("mobilenetv3"):
        return _mobilenet(key[len("mobilenetv3"):], n_classes, in_channels, small)
    if not small:
        return _torchvision_plain(key, n_classes, in_channels)
    if key == "alexnet":
        return AlexNetSmall(n_classes, in_channels, size)
    if key.startswith("vgg"):
        return VGGSmall(int(key[3:]), n_classes, in_channels, size)
    return ResNetSmall(int(key[6:]), n_classes, in_channels)
