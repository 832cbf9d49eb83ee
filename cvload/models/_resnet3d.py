"""3D ResNet-18 (Hara et al., 2018; torchvision's ``r3d_18`` layout), the backbone of the
IMRNet and MVCGC streams. Layers are exposed one by one so that two-stream models can
connect them."""

from __future__ import annotations

from torch import nn

__all__ = ["ResNet3d18"]


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != (1, 1, 1) or c_in != c_out:
            self.down = nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm3d(c_out))

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + skip)


class ResNet3d18(nn.Module):
    """``stem`` (conv1: 3x7x7, spatial stride ``stem_stride``), then ``layers[0..3]``
    (res2..res5, 2 basic blocks each, 64/128/256/512 channels times ``width``; res3..res5
    halve space and, with ``temporal_stride``, time). :meth:`forward` returns the pooled
    features ``(B, channels[-1])``."""

    def __init__(self, in_channels: int, *, width: float = 1.0, stem_stride: int = 2,
                 temporal_stride: bool = False) -> None:
        super().__init__()
        self.channels = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        c0 = self.channels[0]
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, c0, (3, 7, 7), (1, stem_stride, stem_stride), (1, 3, 3),
                      bias=False),
            nn.BatchNorm3d(c0), nn.ReLU(inplace=True))
        t = 2 if temporal_stride else 1
        layers, c_in = [], c0
        for i, c in enumerate(self.channels):
            stride = (1, 1, 1) if i == 0 else (t, 2, 2)
            layers.append(nn.Sequential(_Block(c_in, c, stride), _Block(c, c, (1, 1, 1))))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.out_channels = self.channels[-1]

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3, 4))
