"""The basicsr compatibility shim."""

import sys


def test_basicsr_imports_through_the_shim():
    from ptcli.compat import import_basicsr

    arch = import_basicsr("archs.rrdbnet_arch")
    net = arch.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    import torch

    assert net(torch.zeros(1, 3, 6, 5)).shape == (1, 3, 24, 20)
    degradations = import_basicsr("data.degradations")  # the module that imports the old name
    assert degradations.rgb_to_grayscale is sys.modules["torchvision.transforms.functional_tensor"].rgb_to_grayscale


def test_the_alias_is_torchvisions_current_module():
    import torchvision.transforms._functional_tensor as current

    from ptcli.compat import install_torchvision_alias

    install_torchvision_alias()
    install_torchvision_alias()  # twice is harmless
    assert sys.modules["torchvision.transforms.functional_tensor"] is current
