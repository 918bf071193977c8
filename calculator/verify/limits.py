"""How big a trace the web app runs: a prediction of the trace's run time, and the refusal.

Fake tensors allocate nothing, so memory and token counts cost nothing; the time goes into
dispatching every op of every layer through MemTracker. Measured with `benchmarks/calibration.py`
on a 2-core x86 machine (torch 2.13.0 CPU): 0.1-0.2 s per decoder layer for inference (prefill +
two decode steps), 0.2-0.7 s per layer for a training step pair (LoRA on all linear layers is the
slowest: peft adds ops to every linear). Community Cloud's shared CPU is assumed twice as slow.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import ModelSpec
from ..workload import Workload
from .compare import VerificationError

# Seconds per decoder layer on Community Cloud (2x the measured upper end above; an assumption).
SECONDS_PER_LAYER_INFERENCE = 0.4
SECONDS_PER_LAYER_TRAINING = 1.4
FIXED_SECONDS = 5.0  # importing torch + transformers and building the model, once per trace
MAX_APP_TRACE_SECONDS = 60.0  # what a page may spend on one trace before asking for the sized-down one
SIZED_DOWN_LAYERS = 2


class TraceTooLargeError(VerificationError):
    """The full-depth trace would take too long for the web app; the sized-down one is offered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TracePlan:
    layers: int | None  # None: full depth
    predicted_seconds: float
    timeout_seconds: float  # the deadline passed to the trace (a few times the prediction)


def predicted_trace_seconds(spec: ModelSpec, workload: Workload, *, layers: int | None = None) -> float:
    n = min(layers or spec.num_hidden_layers, spec.num_hidden_layers) + spec.num_encoder_layers
    per_layer = SECONDS_PER_LAYER_TRAINING if workload.is_training else SECONDS_PER_LAYER_INFERENCE
    return FIXED_SECONDS + n * per_layer


def plan_trace(spec: ModelSpec, workload: Workload, *, sized_down: bool, max_seconds: float = MAX_APP_TRACE_SECONDS) -> TracePlan:
    """The trace the app runs for `spec` and `workload`, or `TraceTooLargeError` saying to size it down."""
    layers = SIZED_DOWN_LAYERS if sized_down else None
    seconds = predicted_trace_seconds(spec, workload, layers=layers)
    if seconds > max_seconds:
        raise TraceTooLargeError(
            f"A full-depth trace of {spec.model_id} ({spec.num_hidden_layers} layers) would take about {seconds:.0f} s here, over the "
            f"{max_seconds:.0f} s this app allows. Tick 'sized-down ({SIZED_DOWN_LAYERS} layers)', or run "
            "`python -m calculator verify` on your machine."
        )
    return TracePlan(layers=layers, predicted_seconds=seconds, timeout_seconds=max(3 * seconds, 30.0))
