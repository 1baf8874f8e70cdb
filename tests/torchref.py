"""Reference networks written directly in PyTorch, for the zoo's oracle tests (torchvision is not installable beside the
pinned torch, so its models are re-written here from torchvision's source: same layers, same parameter names).

Independent of dlcourse.interop on purpose: the tests compare the zoo with these, and interop with both.
"""
from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F


# ---------------------------------------------------------------- torchvision.models.googlenet (aux_logits=False)
class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x): return F.relu(self.bn(self.conv(x)), inplace=True)


class TVInception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, ceil_mode=True):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        # torchvision: "Here, kernel_size=3 instead of kernel_size=5 is a known bug" (kept for weight compatibility)
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=ceil_mode),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x): return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TVGoogLeNet(nn.Module):
    "torchvision's GoogLeNet without auxiliary classifiers; ceil_mode=False pads the pools by 1 instead (dlcourse's choice)"
    def __init__(self, num_classes=1000, ceil_mode=True):
        super().__init__()
        pool = (lambda k, s: nn.MaxPool2d(k, s, ceil_mode=True)) if ceil_mode else (lambda k, s: nn.MaxPool2d(k, s, padding=k // 2 if k == 3 else 0))
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = pool(3, 2)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = pool(3, 2)
        self.inception3a = TVInception(192, 64, 96, 128, 16, 32, 32, ceil_mode)
        self.inception3b = TVInception(256, 128, 128, 192, 32, 96, 64, ceil_mode)
        self.maxpool3 = pool(3, 2)
        self.inception4a = TVInception(480, 192, 96, 208, 16, 48, 64, ceil_mode)
        self.inception4b = TVInception(512, 160, 112, 224, 24, 64, 64, ceil_mode)
        self.inception4c = TVInception(512, 128, 128, 256, 24, 64, 64, ceil_mode)
        self.inception4d = TVInception(512, 112, 144, 288, 32, 64, 64, ceil_mode)
        self.inception4e = TVInception(528, 256, 160, 320, 32, 128, 128, ceil_mode)
        self.maxpool4 = pool(2, 2)
        self.inception5a = TVInception(832, 256, 160, 320, 32, 128, 128, ceil_mode)
        self.inception5b = TVInception(832, 384, 192, 384, 48, 128, 128, ceil_mode)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ('4a', '4b', '4c', '4d', '4e'): x = getattr(self, f'inception{name}')(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# ---------------------------------------------------------------- torchvision.models.resnet18
class TVBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TVResNet18(nn.Module):
    def __init__(self, num_classes=1000, in_channels=3, small_input=False, width=64):
        super().__init__()
        k, s, p = (3, 1, 1) if small_input else (7, 2, 3)
        self.conv1 = nn.Conv2d(in_channels, width, k, s, p, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c = width
        for i, (planes, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)), 1):
            setattr(self, f'layer{i}', nn.Sequential(TVBasicBlock(c, planes, stride), TVBasicBlock(planes, planes)))
            c = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- torchvision.models.vgg16
def tv_vgg16(num_classes=1000):
    layers, c = [], 3
    for v in (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'):
        if v == 'M': layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else: layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]; c = v
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(*layers), avgpool=nn.AdaptiveAvgPool2d((7, 7)), flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 4096),
                                 nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, num_classes))))


# ---------------------------------------------------------------- the lecture's AlexNet and LeNet-5
def ref_alexnet(num_classes=1000):
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)   # the paper's alpha = 1e-4 without /n
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 96, 11, 4), relu1=nn.ReLU(), pool1=nn.MaxPool2d(3, 2), norm1=lrn(),
        conv2=nn.Conv2d(96, 256, 5, padding=2), relu2=nn.ReLU(), pool2=nn.MaxPool2d(3, 2), norm2=lrn(),
        conv3=nn.Conv2d(256, 384, 3, padding=1), relu3=nn.ReLU(), conv4=nn.Conv2d(384, 384, 3, padding=1), relu4=nn.ReLU(),
        conv5=nn.Conv2d(384, 256, 3, padding=1), relu5=nn.ReLU(), pool3=nn.MaxPool2d(3, 2), flatten=nn.Flatten(),
        fc6=nn.Linear(9216, 4096), relu6=nn.ReLU(), drop6=nn.Dropout(), fc7=nn.Linear(4096, 4096), relu7=nn.ReLU(),
        drop7=nn.Dropout(), fc8=nn.Linear(4096, num_classes)))


def ref_lenet5(num_classes=10, act=nn.Tanh, pool=nn.AvgPool2d, padding=2):
    return nn.Sequential(OrderedDict(
        c1=nn.Conv2d(1, 6, 5, padding=padding), act1=act(), s2=pool(2, 2), c3=nn.Conv2d(6, 16, 5), act3=act(), s4=pool(2, 2),
        c5=nn.Conv2d(16, 120, 5), act5=act(), flatten=nn.Flatten(), f6=nn.Linear(120, 84), act6=act(),
        output=nn.Linear(84, num_classes)))


def n_params(module): return sum(p.numel() for p in module.parameters())


def on_meta(build, *args, **kwargs):
    "Build a reference network without allocating or initialising its weights (for counting and names)"
    with torch.device('meta'): return build(*args, **kwargs)
