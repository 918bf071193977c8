"""Waveform decode (and reference-audio encode) of higgs-audio's codec, traced: bytes per audio frame.

    python benchmarks/codec_decode_trace.py      # ~30 s on 2 CPU cores

Builds transformers' `DacDecoder` (the acoustic decoder of `HiggsAudioV2TokenizerModel`, which
turns the quantized codes into the 24 kHz waveform) from the converted tokenizer config
(https://huggingface.co/eustlb/tmp/blob/main/config.json, `acoustic_model_config`) in fp32 on fake
tensors, runs it on 50 and 250 frames (2 s and 10 s of audio) under the trace's MemTracker, and
writes `benchmarks/results/codec_decode_trace.txt`: the peak beyond the decoder's weights and the
per-frame slope that `SpeechCodec.decode_bytes_per_frame` uses. The same for the encoder side
that voice cloning runs on the reference audio: `DacEncoder` on 24 kHz samples and the HuBERT
semantic model (`HubertModel`, transformers' default config = HuBERT base, with
`output_hidden_states=True` as the tokenizer calls it) on 16 kHz samples; they run one after the
other, so the larger slope is `SpeechCodec.encode_bytes_per_frame`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from transformers import HubertConfig, HubertModel  # noqa: E402
from transformers.models.dac.configuration_dac import DacConfig  # noqa: E402
from transformers.models.dac.modeling_dac import DacDecoder, DacEncoder  # noqa: E402

from calculator.verify._harness import _PhaseTracker  # noqa: E402

ACOUSTIC = dict(codebook_dim=8, codebook_size=1024, decoder_hidden_size=1024, downsampling_ratios=[8, 5, 4, 2, 3], encoder_hidden_size=64,
                hidden_size=256, hop_length=960, n_codebooks=9, quantizer_dropout=0, sampling_rate=16000, upsampling_ratios=[8, 5, 4, 2, 3])
OUT = ROOT / "benchmarks" / "results" / "codec_decode_trace.txt"


def transient(frames: int) -> tuple[int, int, int]:
    cfg = DacConfig(**ACOUSTIC)
    with FakeTensorMode():
        dec = DacDecoder(cfg)
        dec.eval()
        dec.requires_grad_(False)
        tracker = _PhaseTracker(None, None)
        tracker.track_external(dec)
        with torch.no_grad(), tracker:
            tracker.set_phase("decode")
            out = dec(torch.empty(1, cfg.hidden_size, frames))
            tracker.set_phase(None)
        weights = sum(p.numel() * p.element_size() for p in dec.parameters())
        return tracker.peak_total - weights, weights, out.shape[-1]


def encoder_transient(build, shape: tuple[int, ...], **kwargs) -> int:
    with FakeTensorMode():
        module = build()
        module.eval()
        module.requires_grad_(False)
        tracker = _PhaseTracker(None, None)
        tracker.track_external(module)
        with torch.no_grad(), tracker:
            tracker.set_phase("encode")
            module(torch.empty(*shape), **kwargs)
            tracker.set_phase(None)
        return tracker.peak_total - sum(p.numel() * p.element_size() for p in module.parameters())


def main() -> int:
    rows = {frames: transient(frames) for frames in (50, 250)}
    (t50, weights, s50), (t250, _, s250) = rows[50], rows[250]
    slope = (t250 - t50) // 200
    lines = [
        "DacDecoder (higgs-audio-v2 tokenizer's acoustic decoder), fp32, FakeTensor trace, torch "
        f"{torch.__version__}, transformers {__import__('transformers').__version__}",
        f"decoder weights: {weights:,} bytes",
        f"50 frames -> {s50:,} samples: {t50:,} bytes beyond the weights",
        f"250 frames -> {s250:,} samples: {t250:,} bytes beyond the weights",
        f"slope: {slope:,} bytes per frame ({slope / 960:.1f} per 24 kHz sample); intercept {t50 - 50 * slope:,} bytes",
    ]
    for name, build, rate, kwargs in (("DacEncoder", lambda: DacEncoder(DacConfig(**ACOUSTIC)), 24_000, {}),
                                      ("HubertModel", lambda: HubertModel(HubertConfig()), 16_000, {"output_hidden_states": True})):
        t2 = encoder_transient(build, (1, 1, 2 * rate) if name == "DacEncoder" else (1, 2 * rate), **kwargs)
        t10 = encoder_transient(build, (1, 1, 10 * rate) if name == "DacEncoder" else (1, 10 * rate), **kwargs)
        per_frame = (t10 - t2) // 200  # 25 frames/s: 2 s = 50 frames, 10 s = 250 frames
        lines.append(f"encode, {name}: 2 s -> {t2:,} bytes, 10 s -> {t10:,} bytes beyond the weights; slope {per_frame:,} bytes per frame")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
