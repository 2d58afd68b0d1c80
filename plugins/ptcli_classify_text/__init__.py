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
            target="ptcli_classify_text.command:classify_text",
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
