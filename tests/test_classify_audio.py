"""classify-audio: reading and shaping audio, the ESC-50 adapter, the models, and the CLI."""

import json

import numpy as np
import pytest
import torch
from conftest import train_json, write_yaml

from ptcli.errors import InputError, UsageError
from ptcli_classify_audio.audio import AudioFiles, ClipSpec, LoadClip, fit_length, windows

TONES = {"low": 220.0, "mid": 660.0, "high": 1760.0}


def write_wav(path, rate=8000, seconds=1.0, freq=440.0, channels=1, noise=0.05, seed=0, subtype="PCM_16"):
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(t.shape)
    data = np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data.astype(np.float32), rate, subtype=subtype)
    return path


def make_esc50(root, per_fold=1, folds=5, rate=8000, seconds=1.0):
    """The ESC-50 layout with three tone classes; class i is a sine at TONES' i-th frequency."""
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for target, (name, freq) in enumerate(TONES.items()):
        for fold in range(1, folds + 1):
            for i in range(per_fold):
                filename = f"{fold}-{100 * target + 10 * fold + i}-A-{target}.wav"
                write_wav(root / "audio" / filename, rate, seconds, freq * (1 + 0.03 * i), seed=fold * 10 + i)
                rows.append(f"{filename},{fold},{target},{name},{target == 0},{100 * target + 10 * fold + i},A")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


# --- audio ------------------------------------------------------------------------------------


def test_stereo_is_mixed_down_and_resampled(tmp_path):
    path = write_wav(tmp_path / "stereo.wav", rate=16000, seconds=0.5, channels=2, noise=0)
    wave, rate = AudioFiles().read(path)
    assert wave.shape == (2, 8000) and rate == 16000
    clip = LoadClip(ClipSpec(sample_rate=8000, clip_samples=8000))(path)
    assert clip.shape == (8000,)
    assert clip[:4000].abs().max() == pytest.approx(0.375, abs=0.02)  # mean of 0.25 and 0.5 amplitudes
    assert clip[4000:].abs().max() == 0  # 0.5 s of audio padded with silence to 1 s


def test_flac_and_ogg_read_too(tmp_path):
    for name, subtype in (("a.flac", "PCM_16"), ("a.ogg", "VORBIS")):
        wave, rate = AudioFiles().read(write_wav(tmp_path / name, subtype=subtype))
        assert rate == 8000 and wave.shape[1] > 7000


def test_clip_lengths_and_windows():
    wave = torch.arange(10.0)
    assert fit_length(wave, 4).tolist() == [0, 1, 2, 3]
    assert fit_length(wave, 12).tolist()[-3:] == [9, 0, 0]
    w = windows(wave, 4, 2)
    assert w.shape == (4, 4) and w[-1].tolist() == [6, 7, 8, 9]
    longer = windows(torch.arange(11.0), 4, 2)
    assert longer.shape == (5, 4) and longer[-1].tolist() == [8, 9, 10, 0]  # the tail is covered, padded
    assert windows(torch.ones(3), 4, 2).shape == (1, 4)


def test_broken_files_are_input_errors(tmp_path, shared_data):
    with pytest.raises(InputError, match="cannot read audio"):
        AudioFiles().read(shared_data / "esc50" / "audio" / "corrupt.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    with pytest.raises(InputError, match="cannot read audio"):
        AudioFiles().read(text)


# --- ESC-50 -----------------------------------------------------------------------------------


def test_esc50_adapter_reads_the_real_layout(shared_data):
    from ptcli_classify_audio.datasets import read_esc50, split_folds

    clips, classes = read_esc50(shared_data / "esc50")
    assert classes == ["animal", "instrument", "speech", "machine", "alert"]  # in target order, from the CSV
    assert len(clips) == 40 and {c.fold for c in clips} == {1, 2, 3, 4, 5}
    train, val, test = split_folds(clips, [4], [5])
    assert (len(train), len(val), len(test)) == (30, 5, 5)
    ten, ten_classes = read_esc50(shared_data / "esc50", esc10=True)
    assert set(ten_classes) == {"animal", "machine"} and len(ten) == 16


def test_fold_errors(tmp_path):
    from ptcli_classify_audio.datasets import read_esc50, split_folds

    root = make_esc50(tmp_path / "esc", folds=3)
    clips, _ = read_esc50(root)
    with pytest.raises(UsageError, match=r"fold 5 is not in the data \(folds: 1, 2, 3\)"):
        split_folds(clips, [2], [5])
    with pytest.raises(UsageError, match="must not share a fold"):
        split_folds(clips, [2], [2])
    with pytest.raises(UsageError, match="no folds are left"):
        split_folds(clips, [1, 2], [3])
    (root / "audio" / next(iter(sorted((root / "audio").iterdir()))).name).unlink()
    with pytest.raises(UsageError, match="are not in"):
        read_esc50(root)


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [4000, 8000, 22050 * 2])
def test_audionet_takes_any_clip_length(samples):
    from ptcli_classify_audio.nets import AudioNet

    net = AudioNet(num_classes=3, width=8).eval()
    assert net(torch.randn(2, samples)).shape == (2, 3)


def test_spectrogram_net_is_batch_independent_and_takes_cached_spectrograms():
    from ptcli_classify_audio.models import build_spectrogram

    torch.manual_seed(0)
    net = build_spectrogram(num_classes=3, sample_rate=8000, n_mels=32, n_fft=256, hop=128).eval()
    loud, quiet = torch.randn(1, 8000), 1e-3 * torch.randn(1, 8000)
    alone = net(quiet)
    together = net(torch.cat([loud, quiet]))
    torch.testing.assert_close(together[1:], alone, atol=1e-4, rtol=1e-4)
    spectrogram = net.frontend(quiet)
    torch.testing.assert_close(net(spectrogram), alone)


# --- training and the CLI ---------------------------------------------------------------------


def audio_config(tmp_path, root, **model):
    return write_yaml(tmp_path / "audio.yaml", {
        "recipe": "classify-audio",
        "data": {"root": str(root), "sample_rate": 8000, "clip_seconds": 1.0, "val_folds": [4], "test_folds": [5]},
        "model": {"name": "audionet", "width": 8, "dropout": 0.0, **model},
        "trainer": {"epochs": 8, "batch_size": 4, "lr": 0.01, "optimizer": "adam"},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    })


@pytest.fixture
def tone_checkpoint(cli, tmp_path):
    root = make_esc50(tmp_path / "esc", per_fold=2)
    summary = train_json(cli, audio_config(tmp_path, root))
    return summary, root


def test_audionet_trains_classifies_and_evaluates(cli, tone_checkpoint, tmp_path):
    summary, root = tone_checkpoint
    assert summary["metrics"]["val/accuracy"] >= 0.8
    best = summary["best_checkpoint"]
    probe = write_wav(tmp_path / "probe.wav", rate=16000, seconds=1.0, freq=1760.0, channels=2, seed=99)
    result = cli("classify-audio", probe, "--checkpoint", best, "--json", "-k", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] == "high"
    long_file = write_wav(tmp_path / "long.wav", seconds=3.3, freq=220.0, seed=98)
    windowed = cli("classify-audio", long_file, "--checkpoint", best, "--window", "--json", "-k", "1")
    assert json.loads(windowed.stdout)["predictions"][0]["label"] == "low"
    report = json.loads(cli("eval", best, root, "--json").stdout)
    assert report["samples"] == 6 and report["accuracy"] >= 0.8  # fold 5 only: the test fold
    assert report["classes"] == ["low", "mid", "high"]


def test_spectrogram_model_trains_with_augmentation(cli, tmp_path):
    root = make_esc50(tmp_path / "esc", per_fold=2)
    config = audio_config(tmp_path, root, name="spectrogram", pretrained=False, n_mels=32, n_fft=256, hop=128,
                          freq_mask=4, time_mask=8)
    summary = train_json(cli, config, "trainer.epochs=2", "data.augment.gain_db=6", "data.augment.shift=0.1",
                         "data.augment.noise_snr=20", "data.augment.speed=0.1")
    assert "lr/backbone" in summary["metrics"] and "lr/head" in summary["metrics"]
    # Cached spectrograms are the ones the model would compute itself: the same run, the same result.
    computed = train_json(cli, config, "trainer.epochs=1", "run.name=computed")
    cached = train_json(cli, config, "trainer.epochs=1", "data.cache=true", "run.name=cached")
    assert cached["metrics"]["val/loss"] == pytest.approx(computed["metrics"]["val/loss"], rel=1e-4)


def test_cli_errors(cli, tone_checkpoint, tmp_path, shared_data):
    summary, _ = tone_checkpoint
    best = summary["best_checkpoint"]
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n")
    good = write_wav(tmp_path / "good.wav")
    result = cli("classify-audio", good, shared_data / "esc50" / "audio" / "corrupt.wav", text, "--checkpoint", best, "--json")
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert "predictions" in rows[0] and all("cannot read audio" in r["error"] for r in rows[1:])
    assert cli("classify-audio", good, "--checkpoint", best, "--model", "audionet").exit_code == 2
    assert "no such file" in cli("classify-audio", tmp_path / "missing.wav", "--checkpoint", best).stderr


def test_lr_find_on_an_audio_recipe(cli, tmp_path):
    root = make_esc50(tmp_path / "esc")
    result = cli("lr-find", audio_config(tmp_path, root), "--iterations", "8", "--plot", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "lr.png").is_file()


def test_class_folders_layout(cli, tmp_path):
    for split, count in (("train", 4), ("val", 2)):
        for name, freq in TONES.items():
            for i in range(count):
                write_wav(tmp_path / "folders" / split / name / f"{i}.wav", freq=freq, seed=i)
    summary = train_json(cli, audio_config(tmp_path, tmp_path / "folders"), "trainer.epochs=2")
    report = json.loads(cli("eval", summary["best_checkpoint"], tmp_path / "folders", "--json").stdout)
    assert report["samples"] == 6


def test_recipes_validate(cli):
    from conftest import REPO

    for name in ("esc50-audionet", "esc50-spectrogram"):
        result = cli("train", REPO / "recipes" / f"{name}.yaml", "--print-config")
        assert result.exit_code == 0 and "recipe: classify-audio" in result.stdout


def make_tiny_audio_classifier(folder):
    """A 1-layer wav2vec2 sequence classifier with its feature extractor (random weights)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                            num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, classifier_proj_size=8,
                            num_labels=2, id2label={0: "Speech", 1: "Music"}, label2id={"Speech": 0, "Music": 1})
    torch.manual_seed(0)
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=8000, feature_size=1, padding_value=0.0, do_normalize=True).save_pretrained(folder)
    return folder


def test_hugging_face_audio_classifier_from_a_folder(cli, tmp_path):
    folder = make_tiny_audio_classifier(tmp_path / "tiny-audio")
    sound = write_wav(tmp_path / "a.wav", rate=16000, seconds=0.5, channels=2)
    result = cli("classify-audio", sound, "--model", folder, "--json")
    assert result.exit_code == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert {p["label"] for p in predictions} == {"Speech", "Music"}
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)


def test_default_hub_model_offline_and_wrong_models(cli, tmp_path, tiny_bert_encoder):
    sound = write_wav(tmp_path / "a.wav")
    offline = cli("classify-audio", sound)
    assert offline.exit_code == 1 and len(offline.stderr.strip().splitlines()) == 1
    assert "weights 'MIT/ast-finetuned-audioset-10-10-0.4593' are not on this machine: offline mode" in offline.stderr
    untrained = cli("classify-audio", sound, "--model", "audionet")
    assert untrained.exit_code == 2 and "has no published weights" in untrained.stderr
    not_audio = cli("classify-audio", sound, "--model", tiny_bert_encoder)
    assert not_audio.exit_code == 2 and "is not an audio classifier" in not_audio.stderr


def test_checkpoint_of_another_recipe(cli, lstm_config, tmp_path):
    best = train_json(cli, lstm_config)["best_checkpoint"]
    result = cli("classify-audio", write_wav(tmp_path / "a.wav"), "--checkpoint", best)
    assert result.exit_code == 2 and "was made by classify-text, not classify-audio" in result.stderr


def test_human_output_lists_top_k(cli, tmp_path):
    folder = make_tiny_audio_classifier(tmp_path / "tiny-audio")
    sound = write_wav(tmp_path / "a.wav")
    result = cli("classify-audio", sound, "--model", folder, "-k", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == str(sound) and len(lines) == 3
    assert {line.split()[0] for line in lines[1:]} == {"Speech", "Music"} and lines[1].endswith("%")


@pytest.mark.parametrize("window", [False, True])
def test_a_clips_scores_do_not_depend_on_its_batch_mates(cli, tmp_path, window):
    """Files of other lengths, rates and loudness in one batch (a wav2vec2 classifier normalises
    each wave, and windows split long files): each file's scores are those it gets alone."""
    folder = make_tiny_audio_classifier(tmp_path / "tiny-audio")
    files = [write_wav(tmp_path / "short.wav", rate=8000, seconds=0.3, freq=300.0, seed=1),
             write_wav(tmp_path / "long.wav", rate=16000, seconds=2.7, freq=1200.0, noise=0.5, seed=2),
             write_wav(tmp_path / "quiet.wav", rate=22050, seconds=1.1, freq=700.0, noise=0.001, seed=3)]
    extra = ["--window"] if window else []

    def scores(batch_size):
        result = cli("classify-audio", *files, "--model", folder, "--batch-size", batch_size, "--json", *extra)
        assert result.exit_code == 0, result.stderr
        return [{p["label"]: p["score"] for p in json.loads(line)["predictions"]} for line in result.stdout.splitlines()]

    alone, together = scores("1"), scores("8")
    assert len(alone) == 3 and alone != [alone[0]] * 3
    for one, many in zip(alone, together):
        assert one == pytest.approx(many, abs=1e-5)
