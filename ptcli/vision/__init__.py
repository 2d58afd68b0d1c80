"""What several image recipes share: reading images (``imaging``), the EfficientNet-Lite0
network and its packaged weights (``lite0``, ``pretrained``), adversarial attacks and input
filters (``attacks``, ``defenses``)."""
