"""The basicsr compatibility shim."""

import sys


def test_basicsr_imports_through_the_shim():
    from ptcli_super_resolve.basicsr_compat import import_basicsr

    arch = import_basicsr("archs.rrdbnet_arch")
    net = arch.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    import torch

    assert net(torch.zeros(1, 3, 6, 5)).shape == (1, 3, 24, 20)
    degradations = import_basicsr("data.degradations")  # the module that imports the old name
    assert degradations.rgb_to_grayscale is sys.modules["torchvision.transforms.functional_tensor"].rgb_to_grayscale


def test_the_alias_is_torchvisions_current_module():
    import torchvision.transforms._functional_tensor as current

    from ptcli_super_resolve.basicsr_compat import install_torchvision_alias

    install_torchvision_alias()
    install_torchvision_alias()  # twice is harmless
    assert sys.modules["torchvision.transforms.functional_tensor"] is current


def test_only_the_modules_asked_for_load():
    """basicsr's package __init__ files would import its datasets, models and trainer too."""
    import subprocess

    probe = ("import sys; from ptcli_super_resolve.basicsr_compat import import_basicsr; import_basicsr('archs.rrdbnet_arch'); "
             "import_basicsr('archs.discriminator_arch'); print(sorted(m for m in sys.modules if m.startswith('basicsr.')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "'basicsr.archs.rrdbnet_arch'" in loaded and "'basicsr.archs.discriminator_arch'" in loaded
    for heavy in ("basicsr.models", "basicsr.train", "basicsr.data", "basicsr.losses", "basicsr.archs.swinir_arch"):
        assert f"'{heavy}'" not in loaded
