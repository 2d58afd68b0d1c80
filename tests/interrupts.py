"""Ctrl-C that a test sends its own process, counted, so that conftest can tell it from the
user's: a Ctrl-C the user presses stops the suite, one a test sends is part of the test."""
import os
import signal
import time

#: SIGINTs this process sent itself so far.
SENT_TO_SELF = [0]


def ctrl_c_to_self(signum: int = signal.SIGINT) -> None:
    if signum == signal.SIGINT:
        SENT_TO_SELF[0] += 1
    os.kill(os.getpid(), signum)


def sigterm_when(process, ready, after: float) -> str:
    """SIGTERM to a running ``process`` ``after`` seconds past the moment ``ready()`` first holds
    (it must still run then); returns its stderr. The process is killed if anything fails."""
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ready():
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        assert ready(), "the work never started"
        time.sleep(after)
        assert process.poll() is None, "the run ended before SIGTERM: make its input longer"
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
