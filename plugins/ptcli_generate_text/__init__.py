"""generate-text: GPT-2 style text generation and fine-tuning (book ch. 9).

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="generate-text",
    help="Text generation with causal language models (GPT-2 and friends).",
    commands=(
        Command(
            name="generate-text",
            help="Continue a prompt with GPT-2 or any Hugging Face causal language model, streaming tokens.",
            target="ptcli_generate_text.command:generate_text",
            example=("{text}", "--max-new-tokens", "2", "--device", "cpu"),
        ),
    ),
    models="ptcli_generate_text.models:make_registry",
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32", "bf16", "fp16")),
    training="ptcli_generate_text.training:GenerateTextTask",
    predictor="ptcli_generate_text.predictor:TextGenerator",
    export="ptcli_generate_text.exporting:exportable",
    runtimes={"cached-decoder": "ptcli_generate_text.cached:CachedLanguageModel"},
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
