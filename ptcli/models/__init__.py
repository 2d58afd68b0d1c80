"""Models and where they come from: weights files and their cache (``weights``, ``hub``),
checkpoints (``checkpoints``), their metadata (``sidecars``, ``embedded``), state dicts
(``state_dicts``), and loading a recipe's model from whatever the user named (``loading``)."""
