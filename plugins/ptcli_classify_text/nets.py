"""The book's recurrent text classifier (ch. 5): embedding, LSTM / bidirectional LSTM / GRU,
then a linear layer on the final hidden state."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

RNN_KINDS = {"lstm": (nn.LSTM, False), "bilstm": (nn.LSTM, True), "gru": (nn.GRU, False)}


class RecurrentClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, *, kind: str = "bilstm", embed_dim: int = 100,
                 hidden: int = 128, layers: int = 1, dropout: float = 0.3, pad_id: int = 0) -> None:
        super().__init__()
        rnn_class, bidirectional = RNN_KINDS[kind]
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = rnn_class(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                             dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, input_ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Packing makes the final state that of each text's last real token, not of its padding.
        lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embedding(input_ids), lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c); GRU: h
        if self.rnn.bidirectional:
            last = torch.cat([hidden[-2], hidden[-1]], dim=1)
        else:
            last = hidden[-1]
        return self.classifier(self.dropout(last))
