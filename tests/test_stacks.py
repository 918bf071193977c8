"""Stack versions that change memory (calculator/stacks.py): tuple past_key_values before
transformers 4.36, eager CUDA kernel loading before PyTorch 1.13."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest
from test_cli import run_cli

from calculator.errors import InvalidWorkloadError
from calculator.estimate import estimate
from calculator.resolve import resolve_model
from calculator.workload import Workload

LLAMA = "meta-llama/Llama-3.2-3B"


def llama():
    return resolve_model(LLAMA, offline=True).spec


def test_tuple_cache_holds_old_and_new_kv_during_decode() -> None:
    """Llama-3.2-3B, bf16: K/V per token = 28 layers x 2 x 8 heads x 128 x 2 B = 114,688 B.
    Current stack: decode holds 4,096 positions = 469,762,048 B. transformers <= 4.35 also holds
    the previous step's tuple, 4,095 positions = 469,647,360 B more."""
    w = dict(precision="bf16", context_length=4096, generated_tokens=256)
    now = estimate(llama(), Workload(**w))
    old = estimate(llama(), Workload(**w, stack="transformers-4.35"))
    assert old.phases["decode"] - now.phases["decode"] == 469_647_360
    assert old.phases["prefill"] == now.phases["prefill"]  # no past cache in the prefill
    assert old.breakdown.cuda_context_bytes == now.breakdown.cuda_context_bytes == 524_288_000


def test_eager_kernel_loading_adds_the_measured_difference_to_the_context() -> None:
    """pytorch/pytorch PR #86509: 666,632,192 B eager vs 287,047,680 B lazy = 379,584,512 B more;
    500 MiB (524,288,000 B) + 379,584,512 = 903,872,512 B."""
    est = estimate(llama(), Workload(precision="bf16", context_length=1024, stack="torch-1.12"))
    assert est.breakdown.cuda_context_bytes == 903_872_512
    assert any("eagerly" in n and "1343 MiB" in n for n in est.notes)


def test_training_has_no_decode_step_to_double() -> None:
    w = dict(mode="lora", precision="bf16", context_length=1024)
    assert estimate(llama(), Workload(**w)).phases == estimate(llama(), Workload(**w, stack="transformers-4.35")).phases


def test_default_says_what_it_assumed() -> None:
    notes = estimate(llama(), Workload(precision="bf16")).notes
    assert any(n.startswith("Stack assumed: transformers >= 4.36") for n in notes)


def test_unknown_stack_is_refused() -> None:
    with pytest.raises(InvalidWorkloadError, match="stack must be one of current"):
        Workload(stack="4.30")


def test_cli_stack_flag() -> None:
    out = run_cli("estimate", LLAMA, "--precision", "bf16", "--stack", "torch-1.12", "--json", "--offline")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["breakdown"]["cuda_context"] == 903_872_512
    bad = run_cli("estimate", LLAMA, "--stack", "old", "--offline")
    assert bad.returncode == 2 and "--stack" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_stack_is_a_url_parameter() -> None:
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.query_params["stack"] = "transformers-4.35"
    at.run()
    assert not at.exception
    assert at.selectbox(key="main.stack").value == "transformers-4.35"
    assert any("Tuple past_key_values" in c.value for c in at.caption)
