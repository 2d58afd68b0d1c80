"""How generate-text exports: one decoding step of the language model with its key/value
cache, to ONNX. The file takes the new tokens, the attention mask over past and new, their
positions and every layer's past keys and values (``past_<i>_key``/``past_<i>_value``, batch x
heads x past length x head size), and gives the logits of the new tokens and the cache grown by
them (``present_<i>_key``/``present_<i>_value``): the prompt is one step, each new token one
more, so a token costs one step, not a pass over the whole text (ptcli_generate_text.cached
decodes with it).

torch.export stops at transformers' cache objects, so ONNX uses the TorchScript-based exporter;
attention is the plain ("eager") implementation, whose mask the tracer follows."""

from __future__ import annotations

#: The prompt the check's inputs grow from: the cache it holds is a real one.
SAMPLE_PROMPT = "The food was good and the service quick. Prices went up again"


def _step_module(model):
    import torch
    from transformers import DynamicCache

    class CachedStep(torch.nn.Module):
        """One decoding step on flat tensors: the cache goes in and out as keys and values."""

        def __init__(self, lm) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2])))
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=cache, use_cache=True)
            presents = [tensor for layer in out.past_key_values.layers for tensor in (layer.keys, layer.values)]
            return (out.logits, *presents)

    return CachedStep(model).eval()


def cache_shape(config) -> tuple[int, int, int]:
    """(layers, heads, head size) of a causal LM's config."""
    layers = getattr(config, "n_layer", None) or config.num_hidden_layers
    heads = getattr(config, "n_head", None) or config.num_attention_heads
    width = getattr(config, "n_embd", None) or config.hidden_size
    return int(layers), int(heads), int(getattr(config, "head_dim", None) or width // heads)


def exportable(*, checkpoint, model, weights, samples):
    import copy

    import torch

    from ptcli.errors import UsageError
    from ptcli.exporting.spec import Exportable, sidecar

    from . import RECIPE
    from .models import DEFAULT_MODEL, load_language_model, tokenizer_state

    if weights is not None:
        raise UsageError("generate-text takes no --weights; export a checkpoint, or --model NAME|FOLDER")
    lm = load_language_model(model, checkpoint)
    net = copy.deepcopy(lm.model).float().eval()
    net.config._attn_implementation = "eager"  # sdpa's mask shortcuts are shape branches a trace would freeze
    layers, heads, size = cache_shape(net.config)
    text = " ".join(path.read_text(encoding="utf-8") for path in samples) if samples else SAMPLE_PROMPT
    prompt = lm.tokenizer(text, return_tensors="pt")["input_ids"][:, : max(4, min(24, lm.context // 2))]
    if prompt.shape[1] < 4:
        raise UsageError("the --sample text is too short to check an export on (fewer than 4 tokens)")
    step = _step_module(net)

    def sample(n: int):
        """n rows: a real cache of the prompt's first tokens (one length per row would need
        padding: all rows share it), then 2 new tokens, each row's shifted by its index."""
        past_length = prompt.shape[1] - 2
        ids = torch.stack([prompt[0].roll(-k) for k in range(n)])
        with torch.no_grad():
            out = net(input_ids=ids[:, :past_length], use_cache=True)
        past = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        new = ids[:, past_length:past_length + 2]
        mask = torch.ones(n, past_length + 2, dtype=torch.long)
        positions = torch.arange(past_length, past_length + 2).expand(n, 2).contiguous()
        return (new, mask, positions, *past)

    names = ("input_ids", "attention_mask", "position_ids", *(f"past_{i}_{kv}" for i in range(layers) for kv in ("key", "value")))
    outputs = ("logits", *(f"present_{i}_{kv}" for i in range(layers) for kv in ("key", "value")))
    dynamic = {"input_ids": {1: "new"}, "position_ids": {1: "new"}, "attention_mask": {1: "total"}, "logits": {1: "new"},
               **{name: {2: "past"} for name in names[3:]}, **{name: {2: "total"} for name in outputs[1:]}}
    meta = sidecar(RECIPE.name, checkpoint, model=model or (None if checkpoint else DEFAULT_MODEL), classes=None, preprocessing={},
                   tokenizer=tokenizer_state(lm.tokenizer), config=net.config.to_dict(),
                   cache={"layers": layers, "heads": heads, "head_size": size})
    not_yet = "generate-text exports to ONNX only (its cached decoding step), not {}"
    return Exportable(module=step, input_names=names, output_names=outputs, sample=sample, meta=meta, dynamic=dynamic,
                      onnx_exporter="torchscript", output=compare, runtime="cached-decoder",
                      unsupported={fmt: not_yet.format(fmt) for fmt in ("exported-program", "torchscript", "openvino")})


def compare(eager, exported, half: bool) -> tuple[bool, dict, str]:
    """The logits and the grown cache, each within the check's tolerance; greedy next tokens equal."""
    from ptcli.exporting.check import TOLERANCE

    worst, reasons = 0.0, []
    for index, (a, b) in enumerate(zip(eager, exported)):
        a, b = a.float().cpu(), b.float().cpu()
        if a.shape != b.shape:
            return False, {"shape": list(b.shape)}, f"output {index} has shape {list(b.shape)}, eager {list(a.shape)}"
        error = float((a - b).abs().max())
        worst = max(worst, error)
        if error > TOLERANCE[half] * max(1.0, float(a.abs().max())):
            reasons.append(f"output {index}: max abs error {error:.3g}")
    same = float((eager[0].argmax(-1) == exported[0].float().argmax(-1)).float().mean())
    report = {"max_abs_error": worst, "top1_agreement": same}
    if same < 1:
        reasons.append(f"next tokens agree on {same:.0%}")
    return not reasons, report, "; ".join(reasons)
