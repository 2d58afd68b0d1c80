"""How classify-text exports: token ids and attention mask (B, T), batch and length dynamic, to
logits. The tokenizer goes into the file's sidecar, so the export classifies raw text again
in ptcli. The recurrent models are exported through an equivalent forward without packed
sequences, which the exporters cannot follow."""

from __future__ import annotations

#: Texts the export is checked on when no --sample file is given.
SAMPLE_TEXTS = (
    "The food was good and the service quick.",
    "A dull, overlong film; I left before the end.",
    "Prices went up again this quarter.",
    "What a wonderful surprise!",
)


def _modules():
    import torch
    from torch import nn

    class Logits(nn.Module):
        """A Hugging Face classifier as tensors in, logits out."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    class UnpackedRecurrent(nn.Module):
        """RecurrentClassifier's forward without pack_padded_sequence, which the exporters
        cannot follow, with the same result on right-padded batches: the forward direction's
        output at each text's last real token; and (bidirectional) the backward direction's
        output at the first real token of the same text moved to the end of the row, so that
        the backward pass meets the text before any padding, as over the packed text."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            m = self.model
            hidden = m.rnn.hidden_size
            lengths = attention_mask.sum(dim=1).clamp(min=1).view(-1, 1)
            out, _ = m.rnn(m.embedding(input_ids))
            state = out.gather(1, (lengths - 1).unsqueeze(-1).expand(-1, 1, out.shape[-1]))[:, 0, :hidden]
            if m.rnn.bidirectional:
                start = input_ids.shape[1] - lengths
                source = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) - start
                moved = input_ids.gather(1, source.clamp(min=0))  # the text at the end of its row
                back, _ = m.rnn(m.embedding(moved))
                state = torch.cat([state, back.gather(1, start.unsqueeze(-1).expand(-1, 1, back.shape[-1]))[:, 0, hidden:]], dim=1)
            return m.classifier(m.dropout(state))

    return Logits, UnpackedRecurrent


def exportable(*, checkpoint, model, weights, samples):
    from ptcli.errors import UsageError
    from ptcli.exporting.spec import Exportable, sidecar

    import torch

    from ptcli.inference.contract import Source

    from . import RECIPE
    from .nets import RecurrentClassifier
    from .predictor import TextClassifierPredictor

    if weights is not None:
        raise UsageError("classify-text models take no --weights; export a checkpoint, or --model NAME|FOLDER")
    # The Predictor's model and tokenizer: the samples are tokenised as the command does (padded
    # to the tokenizer's length for recurrent nets, see below).
    classifier = TextClassifierPredictor.load(Source(checkpoint, model), torch.device("cpu")).classifier
    Logits, UnpackedRecurrent = _modules()
    net = classifier.model
    if isinstance(net, RecurrentClassifier):
        if net.rnn.bidirectional and net.rnn.num_layers > 1:
            raise UsageError("a bidirectional recurrent model of more than one layer does not export (its layers "
                             "need packed sequences); export a one-layer or unidirectional one")
        module, reference = UnpackedRecurrent(net), net
    else:
        module = reference = Logits(net)
    texts = list(SAMPLE_TEXTS)
    if samples:
        texts = [line.strip() for path in samples for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise UsageError("the --sample files hold no text")
    encoder = classifier.encoder
    # torch.export unrolls a recurrent layer over time, fixing the length: recurrent exports
    # take texts padded to the tokenizer's max_length (ptcli pads them; the result is the same).
    fixed = encoder.max_length if isinstance(net, RecurrentClassifier) else None

    def sample(n: int):
        import torch.nn.functional as F

        # The k-th reuse of a text drops its last k words: other lengths, so padding shows.
        rows = [" ".join(texts[i % len(texts)].split()[: max(1, len(texts[i % len(texts)].split()) - i // len(texts))])
                for i in range(n)]
        batch, _ = encoder(rows)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if fixed is not None:
            ids = F.pad(ids, (0, fixed - ids.shape[1]), value=encoder.pad_id)
            mask = F.pad(mask, (0, fixed - mask.shape[1]), value=0)
        return ids, mask

    meta = sidecar(RECIPE.name, checkpoint, model=model, classes=classifier.labels, preprocessing={},
                   tokenizer=encoder.state(), pad_values={"input_ids": encoder.pad_id, "attention_mask": 0})
    dims = {} if fixed is not None else {"input_ids": {1: "length"}, "attention_mask": {1: "length"}}
    return Exportable(module=module, input_names=("input_ids", "attention_mask"), output_names=("logits",),
                      sample=sample, meta=meta, dynamic=dims, dim_bounds={"length": (2, max(2, encoder.max_length))},
                      reference=reference, quantize="dynamic", distinct=len(texts), calibration_endings=(".txt",))
