"""DeepFool and Carlini-Wagner L2 (ptcli.attacks.minimal) against torchattacks' implementations on
the same small trained network: they fool as often, with changes no larger; held to eps like
ptcli's other attacks; and through `ptcli attack`."""

import json

import pytest
import torch

torchattacks = pytest.importorskip("torchattacks", reason="torchattacks is the reference (pip install torchattacks --no-deps)")


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained for a few seconds to tell three close, noisy tints apart (so that the
    boundary is near: an L2 change of about 1 crosses it), and 24 held-out images."""
    torch.manual_seed(0)
    colours = 0.5 + 0.06 * torch.eye(3)

    def draw(n, seed):
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 3, (n,), generator=g)
        images = (colours[labels][:, :, None, None] + 0.15 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)
        return images, labels

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(32, 3))
    from conftest import fit_full_batch

    fit_full_batch(model, *draw(512, 1), steps=150)
    test_x, test_y = draw(24, 2)
    with torch.no_grad():
        assert (model(test_x).argmax(1) == test_y).float().mean() >= 0.9
    return model, test_x, test_y


def _norms_and_success(model, x, y, adversarial):
    with torch.no_grad():
        fooled = model(adversarial).argmax(1) != y
    return (adversarial - x).flatten(1).norm(dim=1), fooled


def test_deepfool_finds_changes_no_larger_than_torchattacks(trained):
    from ptcli.attacks import ATTACKS

    model, x, y = trained
    ours = ATTACKS["deepfool"](model, x, y, eps=100.0, steps=50, norm="l2")
    theirs = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(x, y)
    our_norms, our_fooled = _norms_and_success(model, x, y, ours)
    their_norms, their_fooled = _norms_and_success(model, x, y, theirs)
    assert our_fooled.float().mean() >= their_fooled.float().mean() - 1e-9 and our_fooled.all()
    both = our_fooled & their_fooled
    assert our_norms[both].mean() <= 1.1 * their_norms[both].mean()


def test_carlini_wagner_fools_with_changes_no_larger_than_torchattacks(trained):
    from ptcli.attacks import ATTACKS

    model, x, y = trained
    ours = ATTACKS["cw"](model, x, y, eps=100.0, steps=100, norm="l2")
    theirs = torchattacks.CW(model, c=1, kappa=0, steps=500, lr=0.01)(x, y)
    our_norms, our_fooled = _norms_and_success(model, x, y, ours)
    their_norms, their_fooled = _norms_and_success(model, x, y, theirs)
    assert our_fooled.float().mean() >= their_fooled.float().mean() - 1e-9
    both = our_fooled & their_fooled
    assert both.any() and our_norms[both].mean() <= 1.1 * their_norms[both].mean()


@pytest.mark.parametrize("method", ["deepfool", "cw"])
def test_minimal_attacks_are_held_to_eps_and_weaken_with_it(trained, method):
    from ptcli.attacks import ATTACKS

    model, x, y = trained
    rates = []
    for eps in (0.05, 0.5, 5.0):
        adversarial = ATTACKS[method](model, x, y, eps=eps, steps=60, norm="l2")
        norms, fooled = _norms_and_success(model, x, y, adversarial)
        assert (norms <= eps + 1e-5).all() and adversarial.min() >= 0 and adversarial.max() <= 1
        rates.append(float(fooled.float().mean()))
    assert rates[0] <= rates[1] <= rates[2] and rates[2] > rates[0]


def test_a_targeted_carlini_wagner_reaches_its_target(trained):
    from ptcli.attacks import ATTACKS

    model, x, y = trained
    target = (y + 1) % 3
    adversarial = ATTACKS["cw"](model, x, target, eps=100.0, steps=100, norm="l2", targeted=True)
    with torch.no_grad():
        assert (model(adversarial).argmax(1) == target).float().mean() >= 0.9


@pytest.mark.parametrize("method", ["deepfool", "cw"])
def test_attack_data_with_a_minimal_attack(cli, tmp_path, method):
    from conftest import make_imagefolder, save_simplenet

    data = make_imagefolder(tmp_path / "colours", {"val": 4}, size=24)
    model = save_simplenet(tmp_path / "simple", image_size=32, classes=["blue", "green", "red"])
    result = cli("attack", "--data", data / "val", "--checkpoint", model, "--method", method, "--norm", "l2", "--eps", "0.5",
                 "--steps", "5", "--no-checks", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["method"] == method and report["norm"] == "l2" and 0 <= report["robust_accuracy"] <= report["clean_accuracy"]
