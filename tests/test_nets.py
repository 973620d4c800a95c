"""Architecture zoo: every net builds at each input size with the documented widths.

Shape checks run on torch's "meta" device (shapes propagate through the real forward
code without arithmetic), so even the 224-pixel VGG19 costs no compute; real forwards
check ``forward == classifier(features)`` on the cheaper nets.
"""

import pytest
import torch
from torch import nn

from sk_coreset.nets import Net, available_nets, build_net

# Embedding widths documented for the DeepCore networks (research/deepcore.md, 2.1);
# the ImageNet-size VGG and AlexNet end in 4096-wide hidden layers.
WIDTH_SMALL = {
    "MLP": 128, "LeNet": 84, "AlexNet": 3072,
    "VGG11": 512, "VGG13": 512, "VGG16": 512, "VGG19": 512,
    "InceptionV3": 2048,
    "ResNet18": 512, "ResNet34": 512, "ResNet50": 2048, "ResNet101": 2048, "ResNet152": 2048,
    "WRN-16-8": 512, "WRN-28-10": 640, "WRN-28-2": 128,
    "MobileNetV3-Large": 1280, "MobileNetV3-Small": 1024,
}
WIDTH_224 = {**WIDTH_SMALL, "AlexNet": 4096, "VGG11": 4096, "VGG13": 4096, "VGG16": 4096,
             "VGG19": 4096}
SIZES = [(3, 32), (1, 28), (3, 224)]
N_CLASSES = 7


def test_zoo_lists_the_paper_architectures():
    assert sorted(available_nets()) == sorted(WIDTH_SMALL)


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.mark.parametrize("name", sorted(WIDTH_SMALL))
def test_every_net_builds_at_every_size_with_documented_widths(name, no_downloads):
    for channels, size in SIZES:
        expected = (WIDTH_224 if size == 224 else WIDTH_SMALL)[name]
        with torch.device("meta"):
            net = build_net(name, N_CLASSES, channels, size).eval()
            emb = net.features(torch.empty(2, channels, size, size))
            logits = net.classifier(emb)
        assert isinstance(net, Net)
        assert isinstance(net.classifier, nn.Linear)
        assert net.classifier.out_features == N_CLASSES
        assert net.embedding_dim == expected
        assert tuple(emb.shape) == (2, expected), (name, size)
        assert tuple(logits.shape) == (2, N_CLASSES), (name, size)


@pytest.mark.parametrize(
    "name", ["MLP", "LeNet", "AlexNet", "VGG11", "ResNet18", "WRN-28-2", "MobileNetV3-Small"]
)
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28)])
def test_forward_is_classifier_of_features(name, channels, size):
    torch.manual_seed(0)
    net = build_net(name, N_CLASSES, channels, size).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        out, emb = net(x), net.features(x)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, emb @ net.classifier.weight.T + net.classifier.bias)


def test_torchvision_variant_at_224_forward():
    torch.manual_seed(0)
    net = build_net("resnet18", N_CLASSES, 3, 224).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.classifier(net.features(x)))
    # ImageNet stem: 7x7 stride-2 conv followed by a max-pool
    assert any(isinstance(m, nn.MaxPool2d) for m in net.modules())


def test_cifar_resnet_has_stride1_3x3_stem_and_no_maxpool():
    net = build_net("ResNet18", 10, 3, 32)
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())


def test_gray_224_and_rgb_small_stems_take_the_right_channels():
    with torch.device("meta"):
        for name in ["resnet50", "vgg11", "alexnet", "inceptionv3", "mobilenetv3-large"]:
            net = build_net(name, 3, 1, 224)
            first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
            assert first.in_channels == 1, name


@pytest.mark.parametrize("spelling", ["resnet18", "ResNet-18", "RESNET_18", "resnet 18"])
def test_names_are_case_insensitive(spelling):
    with torch.device("meta"):
        assert build_net(spelling, 10).embedding_dim == 512
        assert build_net("wrn_28_2", 10).embedding_dim == 128
        assert build_net("MobileNetV3_small", 10).embedding_dim == 1024


def test_mlp_accepts_any_input_size():
    torch.manual_seed(0)
    for channels, size in [(1, 8), (3, (5, 9)), (64, 1)]:
        net = build_net("mlp", 4, channels, size)
        shape = (size, size) if isinstance(size, int) else size
        assert net(torch.randn(3, channels, *shape)).shape == (3, 4)
    flat = build_net("mlp", 4, 64, 1)
    assert flat(torch.randn(3, 64)).shape == (3, 4)


def test_bad_names_and_sizes_raise_value_error():
    with pytest.raises(ValueError, match="Unknown network"):
        build_net("resnet19", 10)
    with pytest.raises(ValueError, match="LeNet needs"):
        build_net("lenet", 10, 1, 8)
    with pytest.raises(ValueError, match="positive"):
        build_net("mlp", 0)
