"""Small hand-built graphs (no torch): MobileNetV2 and test networks with residuals, MixConv, SE."""

from __future__ import annotations

from .graph import Graph, GraphBuilder

MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))


def mobilenet_v2(input_size: int = 224, width: float = 1.0, num_classes: int = 1000) -> Graph:
    """torchvision MobileNetV2 (ReLU6, BatchNorm folded)."""

    def ch(c: float) -> int:
        return max(8, int(c * width + 4) // 8 * 8)

    b = GraphBuilder((3, input_size, input_size), name="mobilenetv2")
    x = b.conv(b.input, ch(32), 3, stride=2, act="relu6", name="features.0")
    c_in = ch(32)
    idx = 1
    for t, c, n, s in MBV2_SETTINGS:
        c_out = ch(c)
        for i in range(n):
            stride = s if i == 0 else 1
            y = x
            if t != 1:
                y = b.conv(y, c_in * t, 1, act="relu6", name=f"features.{idx}.expand")
            y = b.depthwise(y, 3, stride=stride, act="relu6", name=f"features.{idx}.dw")
            y = b.conv(y, c_out, 1, name=f"features.{idx}.project")
            if stride == 1 and c_in == c_out:
                y = b.add(y, x, name=f"features.{idx}.add")
            x, c_in = y, c_out
            idx += 1
    x = b.conv(x, ch(1280) if width > 1.0 else 1280, 1, act="relu6", name="features.18")
    x = b.gap(x, name="pool")
    x = b.reshape(x, (b.shape(x)[0] * b.shape(x)[1] * b.shape(x)[2], 1, 1), name="flatten")
    b.fc(x, num_classes, name="classifier")
    return b.graph


def resnet_like(input_size: int = 64, blocks: int = 2) -> Graph:
    """A small ResNet: stem, max pool, bottleneck blocks with residual adds (incl. projection)."""
    b = GraphBuilder((3, input_size, input_size), name="resnet_like")
    x = b.conv(b.input, 32, 7, stride=2, act="relu", name="stem")
    x = b.pool(x, "max", 3, stride=2, padding=1, name="maxpool")
    c = 32
    for stage, width in enumerate((32, 64)):
        for i in range(blocks):
            stride = 2 if (stage > 0 and i == 0) else 1
            out = width * 4
            y = b.conv(x, width, 1, act="relu", name=f"s{stage}b{i}.conv1")
            y = b.conv(y, width, 3, stride=stride, act="relu", name=f"s{stage}b{i}.conv2")
            y = b.conv(y, out, 1, name=f"s{stage}b{i}.conv3")
            short = x if (stride == 1 and c == out) else b.conv(x, out, 1, stride=stride, name=f"s{stage}b{i}.down")
            x = b.add(y, short, act="relu", name=f"s{stage}b{i}.add")
            c = out
    x = b.gap(x, name="pool")
    b.fc(x, 100, name="fc")
    return b.graph


def mixconv_like(input_size: int = 56, channels: int = 48) -> Graph:
    """MixConv blocks: channel split -> depthwise of kernels 3/5/7 -> concat -> project, + residual."""
    b = GraphBuilder((channels, input_size, input_size), name="mixconv_like")
    x = b.input
    for blk in range(2):
        e = b.conv(x, channels * 3, 1, act="swish", name=f"b{blk}.expand")
        parts = []
        step = channels
        for k_i, k in enumerate((3, 5, 7)):
            s = b.split(e, k_i * step, (k_i + 1) * step, name=f"b{blk}.split{k}")
            parts.append(b.depthwise(s, k, act="swish", name=f"b{blk}.dw{k}"))
        y = b.concat(*parts, name=f"b{blk}.concat")
        y = b.conv(y, channels, 1, name=f"b{blk}.project")
        x = b.add(y, x, name=f"b{blk}.add")
    return b.graph


def se_net(input_size: int = 56, channels: int = 32) -> Graph:
    """MBConv blocks with squeeze-and-excitation (GAP -> FC -> FC -> channel multiply)."""
    b = GraphBuilder((3, input_size * 2, input_size * 2), name="se_net")
    x = b.conv(b.input, channels, 3, stride=2, act="swish", name="stem")
    for blk in range(3):
        stride = 2 if blk == 1 else 1
        e = b.conv(x, channels * 4, 1, act="swish", name=f"b{blk}.expand")
        d = b.depthwise(e, 5, stride=stride, act="swish", name=f"b{blk}.dw")
        d = b.se(d, max(8, channels // 4), act="swish", name=f"b{blk}.se")
        y = b.conv(d, channels, 1, name=f"b{blk}.project")
        x = b.add(y, x, name=f"b{blk}.add") if stride == 1 else y
    x = b.gap(x, name="pool")
    b.fc(x, 10, name="fc")
    return b.graph


TEST_GRAPHS = {"mobilenetv2": lambda: mobilenet_v2(224), "resnet_like": resnet_like,
               "mixconv_like": mixconv_like, "se_net": se_net}
