"""The one shared trainer and what recipes plug into it (see task.py for the contract)."""
