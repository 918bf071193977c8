"""Full fine-tune of a vision-language model on text tokens: the vision tower and projector run on no
input, get no gradient and no AdamW state (traced, 2-layer llava default config, bf16, batch 3 x 1,536:
gradients 1,333,829,632 B and optimizer 2,667,659,348 B, i.e. 666.9M of 991.4M parameters)."""

import warnings

import pytest

pytest.importorskip("transformers")


def test_llava_full_finetune_trains_the_language_model_only():
    from transformers import AutoConfig

    from calculator.estimate import estimate
    from calculator.spec import model_spec_from_config
    from calculator.verify.compare import cut_config
    from calculator.workload import Workload

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = cut_config(AutoConfig.for_model("llava").to_dict(), 2)
    spec = model_spec_from_config("llava", cfg, use_inventory=True)
    assert spec.num_params == 991_401_984
    assert spec.untouched_tower_params == 324_487_168  # CLIP vision tower + projector
    e = estimate(spec, Workload(mode="full", precision="bf16", context_length=1536, batch_size=3))
    trained = 991_401_984 - 324_487_168
    assert e.trainable_params == trained
    # The towers' weights stay resident, with the buffers: CLIP's int64 position_ids 577 x 8 and
    # Llama's fp32 RoPE inv_freq + original_inv_freq 2 x 64 x 4 = 5,128 bytes.
    assert (spec.buffer_elements, spec.fixed_buffer_bytes) == (0, 577 * 8 + 2 * 64 * 4)
    assert e.breakdown.weights_bytes == 2 * 991_401_984 + 5_128
    assert e.breakdown.optimizer_bytes == 4 * trained  # two bf16 AdamW states, language model only
    assert any("no gradient" in n for n in e.notes)


def test_video_llava_both_towers_are_untouched():
    """VideoLlavaConfig() builds two CLIP ViT-L/14-224 towers from one vision_config (`image_tower`,
    `video_tower`). Each: embeddings 1024 + 1024 x 3 x 14 x 14 + 257 x 1024, pre/post LayerNorm
    2 x 2048, 24 layers x 12,596,224 = 303,179,776; with the 20,979,712-parameter projector 627,339,264
    parameters run on no text token. The towers are found from the sub-config each module was built
    with: by name keywords alone `video_tower` was text (but its patch embedding), and the sweep's full
    fine-tune read +16.3% (gradients and AdamW states for 302.6M parameters that get none)."""
    from transformers import AutoConfig

    from calculator.spec import model_spec_from_config
    from calculator.verify.compare import cut_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = cut_config(AutoConfig.for_model("video_llava").to_dict(), 2)
    spec = model_spec_from_config("video_llava", cfg, use_inventory=True)
    assert spec.untouched_tower_params == 2 * 303_179_776 + 20_979_712
    assert spec.text_trained_params == 666_914_816  # the trace's gradients, 1,333,829,632 B in bf16
