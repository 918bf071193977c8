"""The DualFFN audio-token share: a Workload field, a CLI flag, a URL parameter and a widget shown
for DualFFN models, used by the estimate's prefill term (calculator/memory.py) and by the trace
(tests/test_trace_routing.py checks that both agree)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest
from test_cli import run_cli

from calculator import memory
from calculator.errors import InvalidWorkloadError
from calculator.estimate import estimate
from calculator.resolve import resolve_model
from calculator.workload import Workload

HIGGS = "bosonai/higgs-audio-v2-generation-3B-base"
LLAMA = "meta-llama/Llama-3.2-3B"


def higgs():
    return resolve_model(HIGGS, offline=True).spec


def test_the_seed_model_is_dual_ffn_and_llama_is_not() -> None:
    assert higgs().dual_ffn
    assert not resolve_model(LLAMA, offline=True).spec.dual_ffn


def test_prefill_transient_with_a_quarter_audio_tokens() -> None:
    """bf16 (c 2), h 3072, I 8192, q 3072, 1,000 prompt tokens, share 0.25 -> 250 audio, 750 text.
    MLP stage: 1,000 x 4ch + 750 x 3cI = 24,576,000 + 36,864,000 = 61,440,000
    attention: 1,000 x c(4h + 2q) = 36,864,000; norm: 1,000 x (ch + 12h) = 43,008,000
    max = 61,440,000, + the 250 audio embeddings kept (250 x ch = 1,536,000) = 62,976,000."""
    got = memory.prefill_transient_bytes(higgs(), batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", audio_token_share=0.25)
    assert got == 62_976_000
    # No share given (decode, or a text model): one FFN for every token, c(4h + 3I) x 1,000 = 73,728,000.
    assert memory.prefill_transient_bytes(higgs(), batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa") == 73_728_000
    # A text model ignores the share.
    llama = resolve_model(LLAMA, offline=True).spec
    assert memory.prefill_transient_bytes(llama, batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", audio_token_share=0.25) == 73_728_000


def test_share_changes_the_inference_estimate_only_for_dual_ffn() -> None:
    base = Workload(precision="bf16", context_length=4096)
    half = Workload(precision="bf16", context_length=4096, audio_token_share=0.5)
    assert estimate(higgs(), half).phases["prefill"] < estimate(higgs(), base).phases["prefill"]
    llama = resolve_model(LLAMA, offline=True).spec
    assert estimate(llama, half).phases["prefill"] == estimate(llama, base).phases["prefill"]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True])
def test_share_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(InvalidWorkloadError, match="audio token share"):
        Workload(audio_token_share=bad)


def test_cli_audio_share_flag() -> None:
    out = run_cli("estimate", HIGGS, "--precision", "bf16", "--audio-share", "0.5", "--json", "--offline")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["workload"]["audio_token_share"] == 0.5
    bad = run_cli("estimate", HIGGS, "--audio-share", "2", "--offline")
    assert bad.returncode == 2 and "audio token share" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_main_page_shows_the_share_for_the_seed_model_only() -> None:
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.query_params["audio_share"] = "0.25"
    at.run()
    assert not at.exception
    assert at.slider(key="main.audio_share").value == 0.25
    at.text_input(key="main.model").set_value(LLAMA).run()
    assert not at.exception
    assert not [s for s in at.slider if s.key == "main.audio_share"]


@pytest.mark.trace
@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_verification_page_traces_the_seed_model() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    at = AppTest.from_file("../pages/3_Verification.py", default_timeout=180)
    for k, v in {"model": HIGGS, "precision": "bf16", "context": "256", "audio_share": "0.5"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    at.button(key="verify.run").click().run()
    assert not at.exception and not at.error
    rows = at.dataframe[0].value.to_dict("records")
    assert [r["Component"] for r in rows] == ["weights", "activations", "total (torch allocated)"]
    assert all(abs(r["Error %"]) < 5 for r in rows if r["Component"] != "activations")
    assert any("DualFFN routing: 128 of 256 positions" in c.value for c in at.caption)
