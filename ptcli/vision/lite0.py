"""EfficientNet-Lite0 in plain PyTorch, with the same module and state-dict names as timm's
``efficientnet_lite0`` (checkpoints and weights move freely between the two), computing what
timm's ``tf_efficientnet_lite0`` computes: the packaged weights are TensorFlow's, trained with
"SAME" padding and BatchNorm's epsilon at 1e-3. With PyTorch's centred padding and 1e-5
instead, the mean top-1 probability on the shared photos and their crops fell from 0.50 to
0.44, and the share of them whose top two classes lie within 0.02 rose from 6% to 11%.

Why not timm itself, as for every other timm model: importing timm imports torchvision.ops,
which imports torch._dynamo: about 2.4 s of a one-photo `ptcli classify-image` that otherwise
takes about 2 s. This is the default model, so it is built without either. A test checks that
it matches timm's network output for output on the packaged weights.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

#: (block kind, repeats, kernel, stride, expansion, output channels) per stage, as timm's
#: efficientnet_lite0 arch_def ("ds_r1_k3_s1_e1_c16", "ir_r2_k3_s2_e6_c24", ...).
STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280


#: TensorFlow's BatchNorm epsilon, which the packaged weights were trained with (PyTorch's is 1e-5).
BN_EPS = 1e-3


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm then ReLU6 (or nothing): timm's BatchNormAct2d, whose keys are BatchNorm2d's."""

    def __init__(self, channels: int, act: bool = True) -> None:
        super().__init__(channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # torch.jit.script cannot compile super(); eval-mode BatchNorm
            return self.act(F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps))
        return self.act(self._batch_norm(x))

    @torch.jit.unused
    def _batch_norm(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


class SameConv2d(nn.Conv2d):
    """A strided convolution padded as TensorFlow's "SAME" pads it: the output is
    ceil(input / stride) and the odd pixel of padding goes after, not before (a centred pad
    shifts every strided layer's sampling grid by a pixel from the one the weights learned).
    With ``same`` off it pads as it was built to (centred), as ptcli's Lite0 once did."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.same = True  # an instance attribute: torch.jit.script reads no class defaults

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return self._conv_forward(x, self.weight, self.bias)
        high = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        wide = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        # _conv_forward, not super(): torch.jit.script compiles it (--method script)
        return self._conv_forward(F.pad(x, [wide // 2, wide - wide // 2, high // 2, high - high // 2]), self.weight, self.bias)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    return max((-(-size // stride) - 1) * stride + kernel - size, 0)


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride > 1:
        return SameConv2d(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)  # SAME, for odd kernels


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.conv_pw = _conv(cin, cout)
        self.bn2 = BatchNormAct2d(cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = _conv(cin, mid)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = _conv(mid, cout)
        self.bn3 = BatchNormAct2d(cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return out + x if self.has_skip else out


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class EfficientNetLite0(nn.Module):
    """``tensorflow=False``: the network as ptcli ran it before it followed the weights'
    training (centred padding, BatchNorm eps 1e-5), which checkpoints fine-tuned then were
    trained in; their sidecars say so by not saying ``tensorflow`` (classify-image's
    build_model)."""

    def __init__(self, num_classes: int = 1000, tensorflow: bool = True) -> None:
        super().__init__()
        self.conv_stem = _conv(3, STEM, 3, 2)
        self.bn1 = BatchNormAct2d(STEM)
        stages, cin = [], STEM
        for kind, repeats, kernel, stride, expansion, cout in STAGES:
            blocks = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(DepthwiseSeparableConv(cin, cout, kernel, s) if kind == "ds"
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, HEAD)
        self.bn2 = BatchNormAct2d(HEAD)
        self.global_pool = GlobalAvgPool()
        self.classifier = nn.Linear(HEAD, num_classes)
        self.num_features = HEAD
        if not tensorflow:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eps = 1e-5
                if isinstance(module, SameConv2d):
                    module.same, module.padding = False, tuple(k // 2 for k in module.kernel_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pool(self.forward_features(x)))

    def fused(self) -> EfficientNetLite0:
        """A copy for inference with each BatchNorm folded into the convolution before it: the
        same outputs to float rounding, and a forward pass in about 0.6 of the time on a CPU
        (the norms are a third of this network's time there: memory-bound passes over every
        activation). Its state dict is not this one's; train and save the original."""
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        # The modules copied, their tensors shared: only the folded weights are new (copying
        # every tensor first took three times as long, and a one-photo run pays it).
        shared = {id(tensor): tensor for tensor in itertools.chain(self.parameters(), self.buffers())}
        model = copy.deepcopy(self, shared).eval()
        for parent, conv_name, norm_name in _conv_norm_pairs(model):
            conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
            conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                          norm.eps, norm.weight, norm.bias)
            setattr(parent, norm_name, norm.act)  # what is left of it: ReLU6, or nothing
        return model


def _conv_norm_pairs(model: EfficientNetLite0):
    """(module, its convolution's name, the name of the BatchNorm after it), every one."""
    yield model, "conv_stem", "bn1"
    yield model, "conv_head", "bn2"
    for stage in model.blocks:
        for block in stage:
            names = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")) if isinstance(block, InvertedResidual) \
                else (("conv_dw", "bn1"), ("conv_pw", "bn2"))
            for conv, norm in names:
                yield block, conv, norm


#: lukemelas/EfficientNet-PyTorch's names (the packaged weights') for timm's, per block kind.
_BLOCK_NAMES = {
    "ds": {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"},
    "ir": {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_project_conv": "conv_pwl", "_bn2": "bn3"},
}
_TOP_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def timm_name(key: str) -> str:
    """The timm name of a lukemelas-style key (``_blocks.3._bn1.weight`` is ``blocks.2.0.bn2.weight``),
    by name, so that a copy whose tensors were re-ordered (safetensors sorts them) still maps."""
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([_TOP_NAMES[parts[0]], *parts[1:]])
    flat = int(parts[1])
    for stage, (kind, repeats, *_rest) in enumerate(STAGES):
        if flat < repeats:
            return ".".join(["blocks", str(stage), str(flat), _BLOCK_NAMES[kind][parts[2]], *parts[3:]])
        flat -= repeats
    raise KeyError(key)
