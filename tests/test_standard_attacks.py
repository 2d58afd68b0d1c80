"""AutoAttack and its parts (APGD-T, FAB-T, Square), EOT, and the noise filter: each against
the authors' own code (the `pyautoattack` package, a test-only reference) on one small trained
network, the black-box attack against a model whose backward raises, and through `ptcli attack`."""

import json

import pytest
import torch

from ptcli.attacks import apgd, dlr, dlr_targeted, pgd
from ptcli.attacks.autoattack import autoattack
from ptcli.attacks.fab import box_projection, fab_targeted
from ptcli.attacks.square import square, square_fraction

pyautoattack = pytest.importorskip("pyautoattack", reason="pyautoattack is the reference (pip install pyautoattack)")


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained for a few seconds on 10 noisy patterns (enough classes for APGD-T's
    and FAB-T's 9 targets), and 48 held-out images."""
    torch.manual_seed(0)
    patterns = torch.rand(10, 3, 5, 5, generator=torch.Generator().manual_seed(5))
    patterns = torch.nn.functional.interpolate(patterns, size=15, mode="nearest")

    def draw(n, seed):
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 10, (n,), generator=g)
        images = (0.5 * patterns[labels] + 0.25 + 0.3 * torch.randn(n, 3, 15, 15, generator=g)).clamp(0, 1)
        return images, labels

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(12 * 49, 10))
    from conftest import fit_full_batch

    fit_full_batch(model, *draw(1024, 1), steps=120)
    test_x, test_y = draw(48, 2)
    with torch.no_grad():
        assert (model(test_x).argmax(1) == test_y).float().mean() >= 0.8
    return model, test_x, test_y


def _robust(model, x, y, adversarial):
    with torch.no_grad():
        return int((model(adversarial).argmax(1) == y).sum())


def _within(x, adversarial, eps, norm):
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    return bool((size <= eps + 1e-5).all() and adversarial.min() >= 0 and adversarial.max() <= 1)


def _reference(model, norm, eps, attacks):
    import logging

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    return pyautoattack.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="custom",
                                   attacks=attacks, seed=0)


# --- the parts -------------------------------------------------------------------------------


def test_dlr_losses_are_the_published_ones():
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(4))
    target = (y + 3) % 10
    reference = APGDAttack_targeted(torch.nn.Identity(), eps=0.1, device="cpu")
    reference.y_target = target
    assert torch.allclose(dlr(logits, y), APGDAttack(torch.nn.Identity(), eps=0.1, device="cpu").dlr_loss(logits, y))
    assert torch.allclose(dlr_targeted(logits, y, target), reference.dlr_loss_targeted(logits, y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_boundary_projection_is_the_smallest_change(norm):
    from pyautoattack.fab_projections import projection_l2, projection_linf

    g = torch.Generator().manual_seed(0)
    point, w = torch.rand(6, 40, generator=g), torch.randn(6, 40, generator=g)
    b = (w * point).sum(1) + torch.tensor([0.5, -0.4, 0.0, 1.5, -0.05, 0.2])
    ours = box_projection(point, w, b - (w * point).sum(1), norm)
    theirs = (projection_linf if norm == "linf" else projection_l2)(point, w, b)
    size = (lambda d: d.abs().amax(1)) if norm == "linf" else (lambda d: d.norm(dim=1))
    assert torch.allclose((w * (point + ours)).sum(1), b, atol=1e-4)  # on the plane
    assert ((point + ours) >= -1e-6).all() and ((point + ours) <= 1 + 1e-6).all()
    assert (size(ours) <= size(theirs) + 1e-5).all()


def test_square_shrinks_on_the_published_schedule():
    assert [square_fraction(q) for q in (0, 10, 11, 50, 51, 1001, 8001)] == [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 32, 0.8 / 512]


class NoGradient(torch.nn.Module):
    """A model whose backward raises: only an attack that never asks for a gradient runs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return _Refuse.apply(self.model(x))


class _Refuse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits):
        return logits.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this model has no gradient")


@pytest.mark.parametrize("norm,eps", [("linf", 0.08), ("l2", 2.0)])
def test_square_is_black_box_and_as_strong_as_the_reference(trained, norm, eps):
    model, x, y = trained
    blind = NoGradient(model)
    with pytest.raises(RuntimeError, match="no gradient"):
        apgd(blind, x, y, eps=eps, norm=norm, steps=2)
    record = {}
    ours = square(blind, x, y, eps=eps, norm=norm, queries=1000, record=record)
    assert _within(x, ours, eps, norm)
    queries = record["queries"]
    with torch.no_grad():
        fooled = model(ours).argmax(1) != y
        wrong_already = model(x).argmax(1) != y
    assert queries.shape == (len(x),) and (queries >= 1).all() and (queries <= 1000).all()
    assert (queries[~fooled] == 1000).all() and (queries[fooled] < 1000).all()  # it stops once fooled
    assert (queries[wrong_already] <= 2).all()
    reference = _reference(model, norm, eps, ["square"])
    reference.square.n_queries = 1000
    theirs = reference.run_standard_evaluation(x, y, batch_size=len(x))[0]
    # random search: two seeds differ by a sample or two either way
    assert _robust(model, x, y, ours) <= _robust(model, x, y, theirs) + 2
    assert 0 < _robust(model, x, y, ours) < int((~wrong_already).sum())  # the budget matters here


@pytest.mark.parametrize("norm,eps", [("linf", 0.07), ("l2", 1.2)])
def test_fab_t_is_as_strong_as_the_reference(trained, norm, eps):
    model, x, y = trained
    ours = fab_targeted(model, x, y, eps=eps, norm=norm, steps=30)
    reference = _reference(model, norm, eps, ["fab-t"])
    reference.fab.n_iter = 30
    theirs = reference.run_standard_evaluation(x, y, batch_size=len(x))[0]
    assert _within(x, ours, eps, norm)
    assert _robust(model, x, y, ours) <= _robust(model, x, y, theirs)
    with pytest.raises(ValueError, match="picks its own targets"):
        fab_targeted(model, x, y, eps=eps, norm=norm, targeted=True)


@pytest.mark.parametrize("norm,eps", [("linf", 0.08), ("l2", 1.5)])
def test_autoattack_is_as_strong_as_the_reference(trained, norm, eps):
    model, x, y = trained
    record = {}
    ours = autoattack(model, x, y, eps=eps, norm=norm, steps=30, queries=300, record=record)
    reference = _reference(model, norm, eps, ["apgd-ce", "apgd-t", "fab-t", "square"])
    for attack in (reference.apgd, reference.apgd_targeted, reference.fab):
        attack.n_iter = 30
    reference.apgd.n_restarts, reference.fab.n_restarts, reference.apgd_targeted.n_restarts = 1, 1, 1
    reference.fab.n_target_classes = reference.apgd_targeted.n_target_classes = 9
    reference.square.n_queries = 300
    theirs = reference.run_standard_evaluation(x, y, batch_size=len(x))[0]
    assert _within(x, ours, eps, norm)
    after = record["robust_after"]
    assert list(after) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    counts = list(after.values())
    assert counts == sorted(counts, reverse=True) and counts[-1] == _robust(model, x, y, ours)
    assert counts[0] > counts[1] > counts[-1] > 0  # measured: 48, 4, 3 (L-inf); 48, 4, 3 (L2)
    assert _robust(model, x, y, ours) <= _robust(model, x, y, theirs)
    assert set(record["seconds"]) == set(after) - {"clean"}


# --- EOT ---------------------------------------------------------------------------------------


class Jittery(torch.nn.Module):
    """W x plus a random linear term of mean zero drawn on every call: one draw's gradient is
    mostly noise, the mean of many is W's."""

    def __init__(self, classes=4, pixels=3 * 4 * 4, noise=6.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.randn(classes, pixels, generator=g)
        self.noise = noise

    def forward(self, x):
        flat = x.flatten(1)
        jitter = self.noise * torch.randn(self.weight.shape)
        return flat @ self.weight.T + flat @ jitter.T

    def expected(self, x):
        return x.flatten(1) @ self.weight.T


def test_eot_averages_the_gradients_of_a_random_model():
    torch.manual_seed(0)
    model = Jittery()
    x = torch.rand(64, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = model.expected(x).argmax(1)

    def robust(adversarial):
        return int((model.expected(adversarial).argmax(1) == y).sum())

    torch.manual_seed(1)
    one = pgd(model, x, y, eps=0.05, steps=10)
    torch.manual_seed(1)
    many = pgd(model, x, y, eps=0.05, steps=10, eot=40)
    torch.manual_seed(1)
    with_apgd = apgd(model, x, y, eps=0.05, steps=10, eot=40)
    assert robust(many) < robust(one) - 5, (robust(many), robust(one))
    assert robust(with_apgd) < robust(one) - 5


def test_autoattack_rand_runs_apgd_ce_and_dlr_with_eot(trained):
    model, x, y = trained
    calls = {"n": 0}

    def counted(images):
        calls["n"] += 1
        return model(images)

    record = {}
    autoattack(counted, x[:8], y[:8], eps=0.05, version="rand", steps=3, record=record)
    assert list(record["robust_after"]) == ["clean", "apgd-ce", "apgd-dlr"]
    # each APGD step is 20 draws: far more calls than 2 attacks x 4 passes would make
    assert calls["n"] >= 20 * 4
    with pytest.raises(ValueError, match="version"):
        autoattack(model, x, y, eps=0.05, version="plus")


# --- through the CLI ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    from conftest import colour_simplenet_config, make_imagefolder, train_once

    tmp = tmp_path_factory.mktemp("colours")
    data = make_imagefolder(tmp / "data", {"train": 16, "val": 6}, size=16)
    return data, train_once(colour_simplenet_config(tmp, data, "plain"))["best_checkpoint"]


def test_attack_data_with_autoattack_prints_each_attack_in_turn(cli, colour_model):
    data, checkpoint = colour_model
    result = cli("attack", "--data", data / "val", "--checkpoint", checkpoint, "--method", "autoattack", "--eps", "0.3",
                 "--steps", "10", "--queries", "100", "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["method"] == "autoattack" and r["version"] == "standard" and r["steps"] == 10 and r["queries"] == 100
    assert [row["attack"] for row in r["attacks"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    figures = [r["clean_accuracy"]] + [row["robust_accuracy"] for row in r["attacks"]]
    assert figures == sorted(figures, reverse=True) and figures[-1] == r["robust_accuracy"]
    assert [check["name"] for check in r["checks"]] == ["eps 0 gives the clean accuracy", "half the eps is no stronger",
                                                         "half the steps is no stronger"]
    human = cli("attack", "--data", data / "val", "--checkpoint", checkpoint, "--method", "autoattack", "--eps", "0.3",
                "--steps", "5", "--queries", "50", "--no-checks")
    assert "robust accuracy after each attack, in turn:" in human.stdout and "fab-t" in human.stdout
    assert "version standard, 5 steps, Square 50 queries" in human.stdout


def test_square_reports_its_queries_per_file_and_over_data(cli, colour_model, tmp_path):
    data, checkpoint = colour_model
    image = next((data / "val" / "red").iterdir())
    result = cli("attack", image, "--checkpoint", checkpoint, "--method", "square", "--eps", "0.5", "--queries", "200",
                 "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert 1 <= r["queries"] <= 200 and (r["queries"] < 200) == r["success"]
    over = json.loads(cli("attack", "--data", data / "val", "--checkpoint", checkpoint, "--method", "square", "--eps", "0.2",
                          "--queries", "60", "--json").stdout)
    assert over["queries"] == 60 and 1 <= over["mean_queries"] <= 60
    assert over["checks"][2]["name"] == "half the queries is no stronger" and over["checks"][2]["ok"]


def test_a_random_filter_asks_for_eot(cli, colour_model):
    data, checkpoint = colour_model
    args = ("attack", "--data", data / "val", "--checkpoint", checkpoint, "--eps", "0.1", "--defense", "noise:0.2",
            "--steps", "3", "--no-checks", "--json")
    plain = cli(*args)
    assert plain.exit_code == 0 and "draws anew on every call: without --eot N" in plain.stderr
    with_eot = cli(*args, "--eot", "4")
    assert with_eot.exit_code == 0 and "without --eot" not in with_eot.stderr
    r = json.loads(with_eot.stdout)
    assert r["eot"] == 4 and r["defense"] == "noise:0.2" and 0 <= r["robust_accuracy"] <= 1
    assert json.loads(cli(*args, "--eot", "4").stdout) == r  # the filter's draws are seeded


# --- the offline EfficientNet-Lite0 on a shared photo ---------------------------------------------


def test_square_autoattack_and_certify_on_lite0(cli, shared_data, tmp_path):
    cat = shared_data / "images" / "cat.jpg"
    square_run = cli("attack", cat, "--method", "square", "--queries", "40", "-o", tmp_path / "square", "--device", "cpu", "--json")
    assert square_run.exit_code == 0, square_run.stderr
    r = json.loads(square_run.stdout)
    assert 1 <= r["queries"] <= 40 and r["linf"] <= 4 / 255 + 1e-6 and (tmp_path / "square" / "cat_adv.png").is_file()
    auto = cli("attack", cat, "--method", "autoattack", "--steps", "2", "--queries", "5", "-o", tmp_path / "auto",
               "--device", "cpu", "--json")
    assert auto.exit_code == 0, auto.stderr
    r = json.loads(auto.stdout)
    assert r["success"] and r["clean"]["label"] == "tiger cat" and r["linf"] <= 4 / 255 + 1e-6  # APGD-CE alone fools Lite0
    assert r["queries"] == 0  # fooled before Square's turn
    # certified on the dog, which the model is sure of (the cat's top two are 0.37 and 0.33: at
    # 20 noisy samples its smoothed classifier abstains)
    dog = shared_data / "images" / "dog.jpg"
    certified = json.loads(cli("certify", dog, "--sigma", "0.05", "--n", "20", "--n0", "5", "--device", "cpu", "--json").stdout)
    assert certified["input"] == str(dog) and certified["label"] == "German shepherd" and certified["radius"] > 0


def test_square_goes_on_until_the_saved_file_is_fooled(cli, shared_data, tmp_path):
    """Square queries the file's own reading (8 bits, Pillow's resize): on the astronaut it
    used to stop at the barest margin in the differentiable resize, after 66 queries, and the
    saved PNG still read as "jersey" (the model's reading before Lite0 ran with TensorFlow's
    padding; now "football helmet"). The file it writes now reads as another class, within
    eps, and the queries it reports were enough for that."""
    from ptcli.plugins import capabilities
    from ptcli.vision.imaging import to_pixels

    astronaut = shared_data / "images" / "astronaut.jpg"
    run = cli("attack", astronaut, "--method", "square", "--eps", "8/255", "--queries", "300", "-o", tmp_path, "--device",
              "cpu", "--json")
    assert run.exit_code == 0, run.stderr
    r = json.loads(run.stdout)
    assert r["success"] and r["adversarial"]["label"] != r["clean"]["label"] == "football helmet", r
    assert r["queries"] < 300 and r["linf"] <= 8 / 255 + 1e-6
    classifier = capabilities.load(capabilities.IMAGE_CLASSIFIER, model="efficientnet_lite0")
    saved = tmp_path / "astronaut_adv.png"
    with torch.no_grad():  # the module Square queried reads the file as classify-image does
        logits = classifier.as_read()(to_pixels(classifier.read(saved))[None])
    assert int(logits.argmax()) == classifier.predict_file(saved)[0] == classifier.labels.index(r["adversarial"]["label"])


def test_apgd_leaving_fooled_samples_out_changes_no_other_path(trained):
    """first_success drops fooled samples at checkpoints; every other sample's path is its own,
    so the samples it does not fool end exactly where the full run leaves them."""
    model, x, y = trained
    full = apgd(model, x, y, eps=0.07, steps=30)
    early = apgd(model, x, y, eps=0.07, steps=30, first_success=True)
    with torch.no_grad():
        full_fooled, early_fooled = model(full).argmax(1) != y, model(early).argmax(1) != y
    assert torch.equal(full_fooled, early_fooled) and 0 < int(full_fooled.sum()) < len(y)
    assert torch.equal(full[~full_fooled], early[~early_fooled])
    assert _within(x, early, 0.07, "linf")


def test_eot_reaches_the_attacks_that_follow_logits():
    """DeepFool, C&W and FAB get EOT as the mean of N draws of the logits: N calls per pass."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_adversarial.robustness import AttackSettings

    torch.manual_seed(0)
    model = Jittery(noise=0.0)
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = model.expected(x).argmax(1)
    for method, norm in (("cw", "l2"), ("deepfool", "l2"), ("fab", "linf")):
        calls = []

        def counted(images):
            calls.append(len(images))
            return model(images)

        plain = AttackSettings(method=method, norm=norm, eps=0.5, steps=2).run(counted, x, y)
        single = len(calls)
        calls.clear()
        averaged = AttackSettings(method=method, norm=norm, eps=0.5, steps=2, eot=3).run(counted, x, y)
        assert len(calls) == 3 * single, method
        assert torch.allclose(plain, averaged, atol=1e-5), method  # no noise here: the mean is the model


@pytest.mark.parametrize("ctrl_c_at_batch", [1, 2, 5])
def test_ctrl_c_during_attack_data_reports_the_images_done_and_exits_130(cli, colour_model, monkeypatch, ctrl_c_at_batch):
    """Ctrl-C in the k-th batch: the report of the k-1 batches attacked (none: no report), marked
    partial, then exit 130; nothing of the unfinished batch counts."""
    from interrupts import ctrl_c_to_self
    from ptcli_adversarial.robustness import AttackSettings

    data, checkpoint = colour_model
    real, calls = AttackSettings.run, []

    def run(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == ctrl_c_at_batch:
            ctrl_c_to_self()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AttackSettings, "run", run)
    result = cli("attack", "--data", data / "val", "--checkpoint", checkpoint, "--eps", "0.1", "--steps", "3",
                 "--batch-size", "4", "--json")
    assert result.exit_code == 130
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1] == {"error": "interrupted", "exit_code": 130}
    if ctrl_c_at_batch == 1:
        assert len(lines) == 1
        return
    report = lines[0]
    done = 4 * (ctrl_c_at_batch - 1)
    assert report["samples"] == done and report["interrupted"] == f"Ctrl-C after {done} of 18 images: the figures are theirs"
    assert "checks" not in report  # no further runs after Ctrl-C
    calls.clear()
    human = cli("attack", "--data", data / "val", "--checkpoint", checkpoint, "--eps", "0.1", "--steps", "3", "--batch-size", "4")
    assert human.exit_code == 130 and human.stderr.strip().splitlines()[-1] == "error: interrupted"
    assert human.stdout.splitlines()[0] == f"partial report: Ctrl-C after {done} of 18 images: the figures are theirs"
