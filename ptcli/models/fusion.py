"""Networks made faster for inference without changing what they compute: BatchNorms folded
into the convolutions before them, by a network that knows its own layout (``fused()``, as
ptcli.vision.lite0 has). A network without one runs as it is."""

from __future__ import annotations


def folded(net):
    """``net.fused()`` where ``net`` offers it (a copy: ``net`` itself is untouched), else ``net``."""
    fuse = getattr(net, "fused", None)
    return fuse() if callable(fuse) else net
