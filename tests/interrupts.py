"""Ctrl-C that a test sends its own process, counted, so that conftest can tell it from the
user's: a Ctrl-C the user presses stops the suite, one a test sends is part of the test."""
import os
import signal

#: SIGINTs this process sent itself so far.
SENT_TO_SELF = [0]


def ctrl_c_to_self(signum: int = signal.SIGINT) -> None:
    if signum == signal.SIGINT:
        SENT_TO_SELF[0] += 1
    os.kill(os.getpid(), signum)
