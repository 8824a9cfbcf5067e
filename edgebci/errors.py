"""Errors raised at the edges of the pipeline. Each message names the value, what was allowed and the fix."""


class EdgebciError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(EdgebciError, ValueError):
    """Bad user input: a value out of range, an unknown name, a malformed file."""


class DataError(EdgebciError):
    """A recording cannot be read or holds no usable windows."""


class UnsupportedOpError(EdgebciError):
    """The model uses an operator the compiler cannot lower for this target."""


class BudgetError(EdgebciError):
    """The compiled model does not fit the board's memory."""


class ToolchainError(EdgebciError):
    """A compiler, linker or emulator is missing or failed."""


class LinkError(EdgebciError):
    """The serial link to the device failed after every retry."""


def missing_extra(module: str, extra: str) -> EdgebciError:
    return EdgebciError(f"this command needs the Python package '{module}', which is not installed; "
                        f"install it with: pip install 'edgebci[{extra}]' (or run `make setup`)")
