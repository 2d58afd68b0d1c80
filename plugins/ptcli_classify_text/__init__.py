"""classify-text: text classification from the book's LSTM (ch. 5) to fine-tuned transformers
(ch. 9).

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="classify-text",
    help="Text classification: recurrent networks and Hugging Face transformers.",
    commands=(
        Command(
            name="classify-text",
            help="Classify texts (arguments, standard input or a file) with a sentiment model or a fine-tuned checkpoint.",
            doc="""Classify texts with a sentiment model (the default, from the Hugging Face Hub) or a
    trained checkpoint. Prints the top-k labels per text; with --json, one
    {"text", "predictions": [{"label", "score"}]} object per text per line. Empty texts are
    reported and skipped (exit code 1); texts longer than the model's limit are cut, with a
    warning.""",
            help_for={
                "inputs": "Texts to classify; - reads standard input, one text per line.",
                "model": "A Hugging Face sequence-classification model (org/name, downloaded once) or a local model folder [default: distilbert/distilbert-base-uncased-finetuned-sst-2-english].",
                "checkpoint": "A checkpoint from `ptcli train` (NAME.safetensors with its NAME.json sidecar).",
                "batch_size": "Texts per forward pass.",
            },
            example=("{text}", "--device", "cpu"),
        ),
    ),
    models="ptcli_classify_text.models:make_registry",
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32", "bf16", "fp16")),
    training="ptcli_classify_text.training:ClassifyTextTask",
    export="ptcli_classify_text.exporting:exportable",
    predictor="ptcli_classify_text.predictor:TextClassifierPredictor",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
