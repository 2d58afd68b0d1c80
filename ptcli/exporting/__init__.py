"""Exports: a recipe's model as ONNX, a torch.export ExportedProgram or TorchScript, each file
checked against the eager model on real inputs before it is kept, and runnable again by the
recipe's own command (``--checkpoint model.onnx``).

The core does the exporting, checking and loading once for every recipe; a recipe declares
only what is its own (``Recipe.export``): the module to export, real sample inputs, which
dimensions are dynamic, and how two outputs are compared (see ``ptcli.exporting.spec``).
"""
