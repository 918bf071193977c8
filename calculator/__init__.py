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
from .spec import ModelSpec, model_spec_from_config
from .workload import Workload

__all__ = [
    "CalculatorError",
    "GatedModelError",
    "HubUnavailableError",
    "InvalidWorkloadError",
    "MalformedConfigError",
    "ModelNotFoundError",
    "ModelSpec",
    "UnsupportedArchitectureError",
    "Workload",
    "model_spec_from_config",
]
