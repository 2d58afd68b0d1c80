"""Class activation maps (book ch. 7): which parts of the image a classifier's decision rests
on. CAM (Zhou et al. 2016) weighs the last convolutional features by the classifier's weights
(for networks that end in global pooling and one Linear layer); Grad-CAM (Selvaraju et al.
2017) by the class score's gradients, for any network; Grad-CAM++ (Chattopadhay et al. 2018)
by their positive part, weighted, which separates several objects of a class better."""

from __future__ import annotations

from ptcli.errors import UsageError

METHODS = ("cam", "gradcam", "gradcam++")


def find_layer(net, name: str | None):
    """(name, module): ``name``, else the last Conv2d whose output keeps a spatial extent."""
    from torch import nn

    modules = dict(net.named_modules())
    if name is not None:
        if name not in modules:
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise UsageError(f"--layer {name!r} is not a module of this model; its convolutions: {', '.join(convs[-5:]) or 'none'}")
        return name, modules[name]
    convs = [(n, m) for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError("this model has no convolutional layer to explain (a class activation map needs one); "
                         "try a CNN such as efficientnet_lite0 or cnnnet")
    return convs[-1]


def last_linear(net):
    from torch import nn

    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def activation_map(network, net, pixels, target: int | None, *, method: str = "gradcam", layer: str | None = None):
    """(map (h, w) in [0, 1] at the layer's resolution, class index, score, layer name) for
    ``pixels`` (1, 3, H, W) through ``network``; ``net`` is the bare network the layer lives in."""
    import torch

    name, module = find_layer(net, layer)
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["features"] = output

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = network(pixels.requires_grad_(True))
            probabilities = logits.detach().softmax(-1)[0]
            index = int(probabilities.argmax()) if target is None else target
            network.zero_grad(set_to_none=True)
            logits[0, index].backward()
    finally:
        handle.remove()
    features = captured.get("features")
    if features is None or features.dim() != 4:
        raise UsageError(f"layer {name} does not output feature maps (B, C, H, W); choose a convolution with --layer")
    a, grad = features.detach()[0], features.grad[0]
    if method == "cam":
        head = last_linear(net)
        if head is None or head.in_features != a.shape[0]:
            raise UsageError(f"cam needs the layer's {a.shape[0]} channels to feed one Linear layer through global pooling; "
                             "use --method gradcam, which works for any network")
        weights = head.weight.detach()[index]
    elif method == "gradcam":
        weights = grad.mean(dim=(1, 2))
    else:  # gradcam++
        g2, g3 = grad ** 2, grad ** 3
        denominator = 2 * g2 + (a * g3).sum(dim=(1, 2), keepdim=True)
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * grad.clamp(min=0)).sum(dim=(1, 2))
    heat = torch.relu((weights[:, None, None] * a).sum(0))
    heat = heat / heat.max() if heat.max() > 0 else heat
    return heat, index, float(probabilities[index]), name
