"""Text-to-speech models: the audio codec the serving stack loads next to the model (calculator/speech.py)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from calculator import speech
from calculator.estimate import estimate
from calculator.resolve import resolve_model
from calculator.workload import Workload

HIGGS = "bosonai/higgs-audio-v2-generation-3B-base"
# (200,343,777 parameters + 1,056,776 buffer elements) x 4 bytes (fp32) = 805,602,212
CODEC_BYTES = 805_602_212


def spec_of(model_id: str):
    return resolve_model(model_id, offline=True).spec


def test_tts_is_read_from_the_config_not_the_name() -> None:
    assert speech.generates_audio_codes(spec_of(HIGGS).raw_config)
    for text_model in ("meta-llama/Llama-3.2-3B", "google-bert/bert-base-uncased", "openai/gpt-oss-20b"):
        assert not speech.generates_audio_codes(spec_of(text_model).raw_config)
        assert speech.speech_codec(spec_of(text_model)) is None
    # The original higgs schema names the same facts differently.
    assert speech.generates_audio_codes({"audio_num_codebooks": 8, "audio_codebook_size": 1024, "audio_out_token_idx": 128016})
    assert not speech.generates_audio_codes({"num_codebooks": 8, "codebook_size": 1024})  # no audio token: not a speech LM


def test_higgs_codec_size() -> None:
    codec = speech.speech_codec(spec_of(HIGGS))
    assert codec is not None and codec.repo == "bosonai/higgs-audio-v2-tokenizer"
    assert codec.weight_bytes == CODEC_BYTES
    assert codec.frames_per_second == 25 and codec.sample_rate == 24_000


def test_inference_estimate_carries_the_codec_training_does_not() -> None:
    spec = spec_of(HIGGS)
    est = estimate(spec, Workload(precision="bf16", context_length=2048))
    assert est.breakdown.speech_codec_bytes == CODEC_BYTES
    assert est.breakdown.torch_allocated_bytes == sum(v for k, v in est.breakdown.as_dict().items() if k not in ("allocator_reserve", "cuda_context"))
    assert any("audio codec bosonai/higgs-audio-v2-tokenizer" in n for n in est.notes)
    assert estimate(spec, Workload(mode="lora", precision="bf16", context_length=2048)).breakdown.speech_codec_bytes == 0
    vllm = estimate(spec, Workload(precision="bf16", context_length=2048, runtime="vllm"))
    assert vllm.breakdown.speech_codec_bytes == 0 and any("not counted for vLLM" in n for n in vllm.notes)


def test_boson_engine_static_caches() -> None:
    """56 layer slots (28 layers + 28 DualFFN layers) x (1,024 + 4,096 + 8,192 = 13,312 positions)
    x 2 (K, V) x 8 KV heads x 128 x 2 bytes = 3,053,453,312."""
    assert speech.engine_static_cache_bytes(spec_of(HIGGS), compute_bytes=2) == 3_053_453_312


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_main_page_shows_the_codec_row() -> None:
    at = AppTest.from_file("../app.py", default_timeout=120).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert "Audio codec (TTS)" in set(table["Component"])
    at.checkbox(key="main.codec").uncheck().run()
    assert not at.exception
    assert "Audio codec (TTS)" not in set(at.dataframe[0].value["Component"])


def test_waveform_decode_is_its_own_phase() -> None:
    """3,000 generated audio frames x 574,464 B per frame (traced DacDecoder, fp32) = 1,723,392,000 B
    of decoder activations, next to the weights and the codec, with the KV cache gone."""
    spec = spec_of(HIGGS)
    est = estimate(spec, Workload(precision="bf16", context_length=4096, generated_tokens=3000))
    decode = est.phases["audio decode"]
    assert decode == est.breakdown.weights_bytes + CODEC_BYTES + 1_723_392_000
    assert est.peak_phase == "audio decode" and est.breakdown.kv_cache_bytes == 0
    # No generated tokens: nothing to decode.
    assert "audio decode" not in estimate(spec, Workload(precision="bf16", context_length=4096)).phases


def test_codec_can_be_left_off_this_gpu() -> None:
    spec = spec_of(HIGGS)
    off = estimate(spec, Workload(precision="bf16", context_length=4096, generated_tokens=3000, speech_codec=False))
    assert off.breakdown.speech_codec_bytes == 0 and "audio decode" not in off.phases
    on = estimate(spec, Workload(precision="bf16", context_length=4096, generated_tokens=3000))
    assert on.phases["decode"] - off.phases["decode"] == CODEC_BYTES


def test_cli_no_speech_codec() -> None:
    import json

    from test_cli import run_cli

    out = run_cli("estimate", HIGGS, "--no-speech-codec", "--json", "--offline")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["breakdown"]["speech_codec"] == 0


def test_reference_audio_encode_is_a_phase_before_the_prefill() -> None:
    """2,048 tokens of which 500 generated: a 1,548-token prompt, half of it audio -> 774 frames
    (31 s) of reference audio. The DAC encoder (the larger of the two encoders, traced) keeps
    1,232,640 B per frame: 774 x 1,232,640 = 954,063,360 B next to the weights and the codec."""
    spec = spec_of(HIGGS)
    est = estimate(spec, Workload(precision="bf16", context_length=2048, generated_tokens=500, audio_token_share=0.5))
    weights_and_codec = est.phases["audio decode"] - 574_464 * 500  # the decode phase's other two terms
    assert est.phases["audio encode"] == weights_and_codec + 954_063_360
    assert est.peak_phase == "audio encode"
    assert "audio encode" not in estimate(spec, Workload(precision="bf16", context_length=2048, generated_tokens=500)).phases
