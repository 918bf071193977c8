"""What a text-to-speech model needs on the GPU besides itself: the audio codec.

A model that generates audio codes (its head scores `num_codebooks` x `codebook_size` codes per
frame; its config says so) produces no sound by itself: the serving stack loads an audio codec
("audio tokenizer") on the same GPU that decodes the generated codes to a waveform and, for voice
cloning, encodes the reference audio into codes for the prompt. Which codec a model uses is not in
its config, so it is looked up here by model type, with the source of every number.

higgs-audio v2 (`bosonai/higgs-audio-v2-generation-3B-base`):
- boson-ai's engine loads the model, the text tokenizer and the codec onto one device:
  `HiggsAudioServeEngine.__init__` calls `load_higgs_audio_tokenizer(audio_tokenizer_name_or_path,
  device=device)` (github.com/boson-ai/higgs-audio, boson_multimodal/serve/serve_engine.py, commit
  54e66797c7c01c7fbca09724449d56e0f904fd5b); the loader builds `HiggsAudioTokenizer` in fp32 and
  moves it with `model.to(device)`, no dtype change (boson_multimodal/audio_processing/
  higgs_audio_tokenizer.py, commit db168454661229922467c0c560cdf6da88e94105). It encodes reference
  audio (`audio_tokenizer.encode`) and decodes the generated codes (`audio_tokenizer.decode`).
- transformers' port does the same through its processor: `HiggsAudioV2Processor.audio_tokenizer`
  is a `HiggsAudioV2TokenizerModel` that encodes reference audio on its device and decodes the
  output (transformers 5.24.0, models/higgs_audio_v2/processing_higgs_audio_v2.py).
- Size: `HiggsAudioV2TokenizerModel` (transformers 5.24.0) built on the meta device from the
  converted checkpoint's config (https://huggingface.co/eustlb/tmp/blob/main/config.json: DAC
  acoustic encoder/decoder, hidden 256 / decoder 1024, ratios 8-5-4-2-3, hop 960 at 24 kHz = 25
  frames/s; HuBERT-base semantic model; 8 RVQ codebooks of 1024; "dtype": "float32") has
  200,343,777 parameters (acoustic encoder 51,314,496, decoder 20,238,113, HuBERT 94,370,944,
  semantic encoder 14,747,136 and decoder 16,516,608, projections 2,099,200, quantizer 1,057,280)
  and 1,056,776 buffer elements: 805,602,212 bytes in fp32.

Decoding the waveform runs after generation (the KV cache is gone; transformers' processor decodes
one sequence at a time, `HiggsAudioV2Processor.batch_decode`): its acoustic decoder (DAC, fp32)
keeps 574,464 bytes alive per audio frame at its peak, traced with FakeTensors (transformers 5.24
`DacDecoder` with the config above, 50 and 250 frames: 28,708,480 and 143,601,280 bytes beyond its
weights, i.e. 598 bytes per 24 kHz output sample; `benchmarks/codec_decode_trace.py`). That is its
own phase, "audio decode". cuDNN convolution workspaces on a GPU come on top.

Encoding reference audio (voice cloning) runs before the prefill, one clip at a time
(`HiggsAudioV2Processor.__call__`): the HuBERT semantic model on the 16 kHz resample, then the DAC
acoustic encoder on the 24 kHz samples. Traced the same way (same benchmark), HuBERT keeps 526,848
and the DAC encoder 1,232,640 bytes per audio frame beyond their weights; the larger is the
"audio encode" phase, sized for the prompt's audio positions (`Workload.audio_token_share`) of
one sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .spec import ModelSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechCodec:
    """The audio codec a TTS model's serving stack keeps on the GPU."""

    repo: str
    params: int
    buffer_elements: int
    bytes_per_element: int  # the dtype it is loaded in
    dtype: str
    frames_per_second: int
    sample_rate: int
    decode_bytes_per_frame: int  # waveform decode: activations per audio frame at the decoder's peak
    encode_bytes_per_frame: int  # reference-audio encode: the larger of the semantic and acoustic encoders, per frame
    source: str

    @property
    def weight_bytes(self) -> int:
        return (self.params + self.buffer_elements) * self.bytes_per_element


_HIGGS_CODEC = SpeechCodec(
    repo="bosonai/higgs-audio-v2-tokenizer",
    params=200_343_777,
    buffer_elements=1_056_776,
    bytes_per_element=4,
    dtype="fp32",
    frames_per_second=25,
    sample_rate=24_000,
    decode_bytes_per_frame=574_464,
    encode_bytes_per_frame=1_232_640,
    source="boson-ai/higgs-audio serve_engine.py @54e66797 (loads it on the model's device, fp32); size from transformers 5.24 "
    "HiggsAudioV2TokenizerModel on the converted config (calculator/speech.py)",
)
CODECS: dict[str, SpeechCodec] = {"higgs_audio_v2": _HIGGS_CODEC, "higgs_audio": _HIGGS_CODEC}


def generates_audio_codes(config: Mapping[str, Any]) -> bool:
    """Whether the config describes a model that emits audio codes: a codebook count and size
    (`num_codebooks`/`codebook_size`, or the original higgs schema's `audio_num_codebooks`/
    `audio_codebook_size`) next to the audio placeholder token it generates into."""
    def positive(*keys: str) -> bool:
        return any(isinstance(config.get(k), int) and not isinstance(config.get(k), bool) and config[k] > 0 for k in keys)

    return (
        positive("num_codebooks", "audio_num_codebooks")
        and positive("codebook_size", "audio_codebook_size")
        and any(k in config for k in ("audio_token_id", "audio_out_token_idx", "audio_out_bos_token_id", "audio_bos_token_id"))
    )


def speech_codec(spec: ModelSpec) -> SpeechCodec | None:
    """The codec `spec`'s serving stack loads next to it, or None (a text model, or an unknown codec)."""
    if not generates_audio_codes(spec.raw_config):
        return None
    return CODECS.get(spec.model_type)


def codec_note(spec: ModelSpec, codec: SpeechCodec) -> str:
    frames = f"{codec.frames_per_second} audio frames per second, so {codec.frames_per_second * 60:,} tokens are one minute of speech"
    return (
        f"Text-to-speech: the audio codec {codec.repo} ({codec.params / 1e6:,.0f}M parameters, {codec.dtype}, "
        f"{codec.weight_bytes / 2**30:.2f} GiB) sits on the GPU next to the model; it decodes the generated audio codes to a "
        f"{codec.sample_rate // 1000} kHz waveform and encodes reference audio for voice cloning ({frames}). "
        f"Decoding the generated audio to a waveform is its own phase after generation ({codec.decode_bytes_per_frame / 2**20:.2f} MiB "
        "per frame, traced), and encoding reference audio one before the prefill "
        f"({codec.encode_bytes_per_frame / 2**20:.2f} MiB per frame of the prompt's audio)."
    )


def engine_static_cache_bytes(spec: ModelSpec, *, compute_bytes: int, lengths: tuple[int, ...] = (1024, 4096, 8192)) -> int:
    """boson-ai's HiggsAudioServeEngine pre-allocates one StaticCache per length in
    `kv_cache_lengths` (default [1024, 4096, 8192], batch 1) for text_config.num_hidden_layers +
    len(audio_dual_ffn_layers) layer slots (serve_engine.py @54e66797). With DualFFN on every layer
    that is 2 x layers slots of 2 (K, V) x kv_heads x head_dim per position, in the model dtype."""
    slots = 2 * spec.num_hidden_layers if spec.dual_ffn else spec.num_hidden_layers
    return slots * sum(lengths) * 2 * spec.num_key_value_heads * spec.head_dim * compute_bytes
