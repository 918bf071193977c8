"""Errors the user can act on.

Every error raised by the library on bad input is a `CalculatorError`; its message says what went
wrong and what to do next. Pages show the message with `st.error`; the CLI prints it on one line
and exits non-zero. Anything else escaping the library is a bug. The subclasses also inherit the
matching builtin (as `pint` does), so callers that only know `LookupError` still work.
"""

from __future__ import annotations


class CalculatorError(Exception):
    """Anything the user can act on; the UI shows its message."""


class ModelNotFoundError(CalculatorError, LookupError):
    """The model id is not in the catalog, not a local directory, and not on the Hub."""


class GatedModelError(CalculatorError, PermissionError):
    """The repository exists but needs a token with access (gated or private)."""


class HubUnavailableError(CalculatorError, ConnectionError):
    """The Hub could not be reached (offline, timeout, 5xx) and nothing was cached."""


class MalformedConfigError(CalculatorError, ValueError):
    """`config.json` is not valid JSON or lacks a field every model of its family has."""


class UnsupportedArchitectureError(CalculatorError, ValueError):
    """The config is readable but the architecture is not one the memory model understands."""


class InvalidWorkloadError(CalculatorError, ValueError):
    """A workload setting is out of range or contradicts another (e.g. QLoRA at fp32)."""
