"""Inference, once for every recipe: the contract a recipe writes (``contract.Predictor``) and
the loop the core derives from it (``runner``)."""
