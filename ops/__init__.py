"""Operator commands: run from a workstation with credentials, never by the pipeline."""

import signal


def quiet_interrupts() -> None:
    """Ctrl-C (or a closed pipe) ends an operator command the way it ends any other command, by
    the signal, instead of with a KeyboardInterrupt or BrokenPipeError traceback."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
