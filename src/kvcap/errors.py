"""One exception type per kind of bad input; each message is one line that says what to change.

The CLI prints the message without a traceback and exits 2 (bad input) or 1 (does not fit).
"""


class KvcapError(Exception):
    """Base of every error kvcap raises on purpose."""

    exit_code = 2


class ModelError(KvcapError):
    """A model name, file or architecture kvcap cannot read or does not support."""


class DeviceError(KvcapError):
    """An unknown device or an impossible device description."""


class OptionsError(KvcapError):
    """An engine option that is unknown, out of range, or contradicts another."""


class InsufficientMemory(KvcapError):
    """The model does not fit the device under the engine's own rule."""

    exit_code = 1

    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


class ProbeError(KvcapError):
    """The probe or verify could not run (missing extra, no device, allocation failure)."""
