"""generate-text training: fine-tune GPT-2 (or any causal LM, or a small GPT-2 from scratch with
a byte-level BPE tokenizer learnt from the data) on plain text (book ch. 9). The metric is
validation perplexity; a sample is printed every few steps."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from ptcli.errors import UsageError
from ptcli.training.schema import DataConfig, Section, TrainConfig, TrainerConfig
from ptcli.training.task import Export, TrainingTask

from .models import FINE_TUNED


class LMDataConfig(DataConfig):
    """data.root: a .txt file or a folder of them."""

    block_size: int = Field(128, ge=8)
    #: Ids between the starts of two training blocks (default: block_size, no overlap).
    stride: int | None = Field(None, ge=1)
    #: The last part of the token stream held out for validation.
    val_fraction: float = Field(0.1, gt=0, lt=1)
    encoding: str = "utf-8"


class ScratchConfig(Section):
    """A GPT-2 built from this config, with a byte-level BPE tokenizer learnt from the data."""

    n_layer: int = Field(2, ge=1)
    n_head: int = Field(2, ge=1)
    n_embd: int = Field(64, ge=8)
    n_positions: int = Field(256, ge=8)
    vocab_size: int = Field(2000, ge=300)


class LMModelConfig(Section):
    #: gpt2, distilgpt2, org/name or a local folder; null trains model.scratch from scratch.
    pretrained: str | None = "gpt2"
    scratch: ScratchConfig = Field(default_factory=ScratchConfig)


class SampleConfig(Section):
    #: Optimizer steps between samples printed to stderr (0: none).
    every: int = Field(100, ge=0)
    prompt: str = "The"
    max_new_tokens: int = Field(40, ge=1)


class GenerateTextConfig(TrainConfig):
    data: LMDataConfig
    model: LMModelConfig = Field(default_factory=LMModelConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(lr=5e-5, batch_size=8))


def perplexity_metric():
    """exp of the token-weighted mean validation loss."""
    import torch
    from torchmetrics import Metric

    class Perplexity(Metric):
        higher_is_better = False

        def __init__(self) -> None:
            super().__init__()
            self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

        def update(self, losses, counts) -> None:
            self.total += (losses.double() * counts.double()).sum()
            self.count += counts.double().sum()

        def compute(self):
            return torch.exp(self.total / self.count)

    from torchmetrics import MetricCollection

    return MetricCollection({"perplexity": Perplexity()})


class GenerateTextTask(TrainingTask):
    config_schema = GenerateTextConfig
    monitor = "val/perplexity"
    monitor_mode = "min"

    def setup(self) -> None:
        from ptcli.models.hub import quiet_transformers

        from .textdata import blocks, read_corpus, token_stream, train_byte_level_bpe

        quiet_transformers()
        cfg = self.config
        texts = read_corpus(cfg.data.root, cfg.data.encoding)
        if cfg.model.pretrained is None:
            self.tokenizer, self.base = train_byte_level_bpe(texts, cfg.model.scratch.vocab_size), None
            context = cfg.model.scratch.n_positions
        else:
            from .models import load_folder, model_folder

            self.base, self.tokenizer = load_folder(model_folder(cfg.model.pretrained), name=cfg.model.pretrained)
            context = getattr(self.base.config, "n_positions", None) or self.base.config.max_position_embeddings
        if cfg.data.block_size > context:
            raise UsageError(f"data.block_size {cfg.data.block_size} is longer than the model's context ({context} tokens)")
        ids = token_stream(texts, self.tokenizer)
        cut = int(len(ids) * (1 - cfg.data.val_fraction))
        size, stride = cfg.data.block_size, cfg.data.stride or cfg.data.block_size
        self.train_blocks, self.val_blocks = blocks(ids[:cut], size, stride), blocks(ids[cut:], size, size)
        if not self.train_blocks or not self.val_blocks:
            raise UsageError(f"{cfg.data.root} is too short for blocks of {size} tokens with data.val_fraction="
                             f"{cfg.data.val_fraction} ({len(ids)} tokens in all); lower data.block_size")

    def enable_grad_checkpointing(self, models) -> None:
        from ptcli.training.gradient_checkpointing import enable_hf_checkpointing

        enable_hf_checkpointing(models["model"])

    def build_models(self) -> dict:
        if self.base is not None:
            return {"model": self.base}
        from transformers import GPT2Config, GPT2LMHeadModel

        s = self.config.model.scratch
        eos = self.tokenizer.eos_token_id
        config = GPT2Config(vocab_size=len(self.tokenizer), n_positions=s.n_positions, n_embd=s.n_embd, n_layer=s.n_layer,
                            n_head=s.n_head, bos_token_id=eos, eos_token_id=eos)
        if s.n_embd % s.n_head:
            raise UsageError(f"model.scratch.n_embd ({s.n_embd}) must be a multiple of model.scratch.n_head ({s.n_head})")
        return {"model": GPT2LMHeadModel(config)}

    def datasets(self):
        from .textdata import Blocks

        return Blocks(self.train_blocks), Blocks(self.val_blocks)

    def metrics(self):
        return perplexity_metric()

    def training_step(self, batch, ctx):
        loss = ctx.model(input_ids=batch, labels=batch).loss
        ctx.optimize(loss)
        return {"loss": loss.detach()}

    def callbacks(self) -> list:
        return [PrintSamples(self)] if self.config.sample.every else []

    def print_sample(self, ctx) -> None:
        """Greedy, so that printing samples never changes the random numbers training draws."""
        import torch

        model = ctx.unwrapped()
        s = self.config.sample
        ids = self.tokenizer(s.prompt, return_tensors="pt")["input_ids"].to(ctx.device)
        model.eval()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=s.max_new_tokens, do_sample=False,
                                 pad_token_id=self.tokenizer.eos_token_id)
        model.train()
        text = self.tokenizer.decode(out[0], skip_special_tokens=True)
        sys.stderr.write(f"sample at step {ctx.step}: {' '.join(text.split())}\n")

    def validation_step(self, batch, ctx):
        import torch

        loss = ctx.model(input_ids=batch, labels=batch).loss.float()
        predicted = torch.tensor([batch.numel() - batch.shape[0]], device=batch.device, dtype=torch.float64)
        ctx.update_metrics(loss.reshape(1), predicted)
        return {"loss": loss}

    def export(self, models: Mapping) -> Export:
        from .models import tokenizer_state

        model = models["model"]
        config = model.config.to_dict()
        config["architectures"] = [type(model).__name__]
        return Export(state_dict=model.state_dict(), model=FINE_TUNED,
                      preprocessing={"block_size": self.config.data.block_size},
                      model_args={"config": config, "source": self.config.model.pretrained or "scratch"},
                      extra={"tokenizer": tokenizer_state(self.tokenizer)})

    @classmethod
    def evaluate(cls, checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
        from .evaluation import evaluate_checkpoint

        return evaluate_checkpoint(checkpoint, data, device=device, batch_size=batch_size)

    @classmethod
    def format_evaluation(cls, report) -> str:
        from .evaluation import format_report

        return format_report(report)


class PrintSamples:
    """Every ``sample.every`` optimizer steps, a greedy continuation of ``sample.prompt`` on
    stderr (main process only)."""

    def __init__(self, task) -> None:
        self.task = task
        self.last = -1

    def on_batch_end(self, trainer, losses) -> None:
        ctx, every = trainer.ctx, self.task.config.sample.every
        if ctx.step % every == 0 and ctx.step != self.last and ctx.is_main_process:
            self.last = ctx.step
            self.task.print_sample(ctx)
