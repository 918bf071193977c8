"""VRAM & GPU cost calculator: peak GPU memory of Hugging Face models, and the cheapest GPUs for it.

The library is pure Python: it imports no streamlit, plotly, torch or huggingface_hub at load
time (`calculator.hub` imports huggingface_hub inside its functions; `calculator.verify` is the
only code that imports torch).
"""

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
