"""VRAM & GPU cost calculator: peak GPU memory of Hugging Face models, and the cheapest GPUs for it.

The library is pure Python: it imports no streamlit, plotly, torch or huggingface_hub at load
time (`calculator.hub` imports huggingface_hub inside its functions; `calculator.verify` is the
only code that imports torch).
"""

import logging

from .errors import (
    CalculatorError,
    GatedModelError,
    HubUnavailableError,
    InvalidWorkloadError,
    MalformedConfigError,
    ModelNotFoundError,
    UnsupportedArchitectureError,
)
from .estimate import Breakdown, Estimate, estimate
from .report import Plan, build_plan, estimate_to_dict
from .resolve import ResolvedModel, resolve_model
from .spec import ModelSpec, model_spec_from_config
from .workload import Workload

# A library logs, the application decides where it goes: without this, Python's last-resort handler
# would print our warnings (a cache that cannot be written) to stderr, past the CLI's one error line.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Breakdown",
    "CalculatorError",
    "Estimate",
    "GatedModelError",
    "HubUnavailableError",
    "InvalidWorkloadError",
    "MalformedConfigError",
    "ModelNotFoundError",
    "ModelSpec",
    "Plan",
    "ResolvedModel",
    "UnsupportedArchitectureError",
    "Workload",
    "build_plan",
    "estimate",
    "estimate_to_dict",
    "model_spec_from_config",
    "resolve_model",
]
