"""The core's own commands, in one table: the CLI registers them from it, and the plugin
manager refuses any plugin command that would take one of these names (a command added here
is reserved by that alone)."""

#: name -> ("module:function" under ptcli.commands, one-line help). A group (plugins, weights)
#: names a Typer app.
CORE = {
    "train": ("train_cmd:train", "Train a recipe from a YAML config (resumable, DDP-ready)."),
    "lr-find": ("train_cmd:lr_find", "Find a learning rate: the LR range test, with a plot."),
    "eval": ("train_cmd:evaluate", "Score a trained checkpoint on labelled data."),
    "export": ("export_cmd:export", "Export a model to ONNX, torch.export or TorchScript, checked against eager."),
    "export-torchscript": ("export_cmd:export_torchscript", "Export to TorchScript as the book does (deprecated in torch 2.11)."),
    "serve": ("serve_cmd:serve", "Serve a model over HTTP with dynamic batching (/predict, /metrics, a page)."),
    "plugins": ("plugins_cmd:app", None),
    "env": ("env_cmd:env", None),
    "weights": ("weights_cmd:app", None),
}

#: Names no plugin command may take: every core command, and the root's own options' words.
RESERVED = frozenset(CORE) | {"version", "help"}
