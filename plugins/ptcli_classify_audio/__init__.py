"""classify-audio: environmental sound classification, raw waveforms and mel spectrograms
(book ch. 6, ESC-50).

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="classify-audio",
    help="Audio classification: the book's AudioNet on waveforms, or CNNs on mel spectrograms.",
    commands=(
        Command(
            name="classify-audio",
            help="Classify sound files (WAV, FLAC, OGG) with a model trained by `ptcli train`.",
            doc="""Classify sound files with a trained checkpoint, or a Hugging Face audio classifier
    (AudioSet's by default). Each file is mixed down to mono,
    resampled to the model's rate and padded or cut to its clip length (or, with --window,
    split into clips whose predictions are averaged). Unreadable files are reported and
    skipped; the exit code is then 1.""",
            help_for={
                "inputs": "Sound files (.wav, .flac, .ogg), folders or globs.",
                "model": "A Hugging Face audio classifier (org/name, downloaded once) or local folder [default without --checkpoint: MIT/ast-finetuned-audioset-10-10-0.4593, AudioSet's 527 classes].",
                "checkpoint": "A checkpoint from `ptcli train recipes/esc50-*.yaml`, or its export.",
                "batch_size": "Files per forward pass.",
            },
            example=("{clip}", "--device", "cpu"),
        ),
    ),
    models="ptcli_classify_audio.models:make_registry",
    data="ptcli_classify_audio.audio:AudioFiles",
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32", "bf16", "fp16")),
    training="ptcli_classify_audio.training:ClassifyAudioTask",
    export="ptcli_classify_audio.exporting:exportable",
    predictor="ptcli_classify_audio.predictor:AudioClassifier",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
