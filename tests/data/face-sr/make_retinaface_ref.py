#!/usr/bin/env python3
"""Reference outputs of RetinaFace-ResNet50's whole network (backbone, FPN,
SSH, heads) for test_face_detect, written with PyTorch's own modules as
facexlib's retinaface_resnet50 builds them (torchvision ResNet-50 v1.5 body,
layers 2-4; FPN with nearest upsampling to the lateral's size; SSH; 1x1
heads permuted to (B, H*W*2, k); softmax over the classes), at every width
divided by 16 so that the checkpoint is small.  facexlib's rule applies:
LeakyReLU(0.1) in FPN and SSH when out_channels <= 64 (here 16), else ReLU.

Not needed at run time or by the tests: the outputs are committed.  Run
with Debian's python3-torch:  python3 make_retinaface_ref.py  (in this
folder).  Writes retinaface_narrow.pth (the released key layout) and
retinaface_narrow_{input,loc,conf,landms}.npy."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

W = 16  # width divisor


def cbr(cin, cout, k, stride, slope):  # Sequential(conv, bn[, leaky relu])
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if slope is not None:
        layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: the stride here
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Body(nn.Module):  # ResNet-50 up to layer4
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64 // W, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64 // W)
        cin = 64 // W
        for i, (blocks, width, stride) in enumerate([(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(cin, width // W, stride if b == 0 else 1))
                cin = width // W * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer1(x)
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c2, c3, c4]


class FPN(nn.Module):
    def __init__(self, ins, out):
        super().__init__()
        s = 0.1 if out <= 64 else 0.0
        self.output1, self.output2, self.output3 = (cbr(c, out, 1, 1, s) for c in ins)
        self.merge1 = cbr(out, out, 3, 1, s)
        self.merge2 = cbr(out, out, 3, 1, s)

    def forward(self, c):
        o1, o2, o3 = self.output1(c[0]), self.output2(c[1]), self.output3(c[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=[o2.size(2), o2.size(3)], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=[o1.size(2), o1.size(3)], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    def __init__(self, c):
        super().__init__()
        s = 0.1 if c <= 64 else 0.0
        self.conv3X3 = cbr(c, c // 2, 3, 1, None)
        self.conv5X5_1 = cbr(c, c // 4, 3, 1, s)
        self.conv5X5_2 = cbr(c // 4, c // 4, 3, 1, None)
        self.conv7X7_2 = cbr(c // 4, c // 4, 3, 1, s)
        self.conv7x7_3 = cbr(c // 4, c // 4, 3, 1, None)

    def forward(self, x):
        a = self.conv5X5_1(x)
        b = self.conv7X7_2(a)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(a), self.conv7x7_3(b)], 1))


class Head(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.k = k
        self.conv1x1 = nn.Conv2d(c, 2 * k, 1)

    def forward(self, x):
        y = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return y.view(y.shape[0], -1, self.k)


class RetinaFace(nn.Module):
    def __init__(self):
        super().__init__()
        out = 256 // W
        self.body = Body()
        self.fpn = FPN([512 // W, 1024 // W, 2048 // W], out)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out), SSH(out), SSH(out)
        self.ClassHead = nn.ModuleList(Head(out, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(out, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(out, 10) for _ in range(3))

    def forward(self, x):
        f = self.fpn(self.body(x))
        f = [self.ssh1(f[0]), self.ssh2(f[1]), self.ssh3(f[2])]
        loc = torch.cat([h(x) for h, x in zip(self.BboxHead, f)], 1)
        conf = torch.cat([h(x) for h, x in zip(self.ClassHead, f)], 1)
        ldm = torch.cat([h(x) for h, x in zip(self.LandmarkHead, f)], 1)
        return loc, F.softmax(conf, dim=-1), ldm


def main():
    torch.manual_seed(0)
    net = RetinaFace()
    with torch.no_grad():
        for name, t in net.state_dict().items():  # trained-looking batch norms
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.2)
            elif t.dim() == 1 and not name.endswith("num_batches_tracked") and "conv1x1" not in name:
                (t.uniform_(0.5, 1.5) if name.endswith("weight") else t.normal_(0, 0.1))
    net.eval()
    # As released: saved from DataParallel, every key under "module.".
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, "retinaface_narrow.pth")
    # 70 x 100: sizes that do not halve evenly, so the upsampling sizes matter.
    x = torch.randn(1, 3, 70, 100) * 50
    with torch.no_grad():
        loc, conf, ldm = net(x)
    np.save("retinaface_narrow_input.npy", x.numpy())
    np.save("retinaface_narrow_loc.npy", loc.numpy())
    np.save("retinaface_narrow_conf.npy", conf.numpy())
    np.save("retinaface_narrow_landms.npy", ldm.numpy())
    print("keys", len(net.state_dict()), "loc", tuple(loc.shape), "max |loc|", float(loc.abs().max()))


if __name__ == "__main__":
    main()
