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
            target="ptcli_classify_audio.command:classify_audio",
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
