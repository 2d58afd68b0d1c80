"""`ptcli serve`: a recipe's model behind HTTP (FastAPI + uvicorn), with dynamic batching.

A recipe declares what is its own (``Recipe.serve``, see ``ptcli.serving.spec``): how one input's
bytes become a model input, and how a batch of them becomes one JSON result each (the same
objects as its command's ``--json``). The core does the rest once: reading and limiting request
bodies, the batching queue, timeouts, errors as JSON, metrics, the log, the page at ``/``.
"""
