"""The caching-allocator model against allocation sequences worked by hand from the rules of
c10/cuda/CUDACachingAllocator.cpp (calculator/allocator.py names each one), and the estimate's
allocator cache against the length distribution."""

from __future__ import annotations

import dataclasses

import pytest

from calculator import allocator
from calculator.allocator import StepTensors, replay, replay_steps, round_size, segment_size, split_per_token
from calculator.estimate import RESERVED_FRACTION_TRAINING, estimate
from calculator.resolve import resolve_catalog
from calculator.workload import Workload

MiB = 1 << 20


def test_rounding_and_segment_sizes():
    assert (round_size(1), round_size(512), round_size(513), round_size(3 * MiB + 1)) == (512, 512, 1024, 3 * MiB + 512)
    assert segment_size(512) == segment_size(MiB) == 2 * MiB  # small pool: 2 MiB segments
    assert segment_size(MiB + 512) == segment_size(10 * MiB - 512) == 20 * MiB  # 1-10 MiB: a 20 MiB segment
    assert segment_size(10 * MiB) == 10 * MiB and segment_size(11 * MiB + 512) == 12 * MiB  # larger: rounded up to 2 MiB


def test_small_requests_share_one_2_mib_segment():
    # 100 B -> 512 B, 1,000 B -> 1,024 B: both carved from one 2 MiB small-pool segment.
    s = replay([(0, 100), (1, 1000)])
    assert (s.peak_allocated_bytes, s.peak_requested_bytes, s.peak_reserved_bytes, s.segments) == (1536, 1100, 2 * MiB, 1)


def test_a_large_segment_is_split_and_its_remainder_reused():
    # 3 MiB opens a 20 MiB segment and splits it (17 MiB left > 1 MiB); 12 MiB fits the remainder
    # (best fit, no new segment) and splits it again (5 MiB left); 11 MiB + 1 B is rounded to
    # 11 MiB + 512, fits no cached block (5 MiB), opens a 12 MiB segment whose last ~1 MiB is not
    # split off (not more than 1 MiB), so the whole 12 MiB counts as allocated.
    s = replay([(0, 3 * MiB), (1, 12 * MiB), (2, 11 * MiB + 1)])
    assert s.peak_reserved_bytes == 32 * MiB and s.segments == 2
    assert s.peak_allocated_bytes == 3 * MiB + 12 * MiB + 12 * MiB
    assert s.peak_requested_bytes == 26 * MiB + 1


def test_splitting_leaves_a_sliver_the_next_longer_tensor_cannot_use():
    # Step 1 frees a 30 MiB tensor; step 2's 20 MiB tensor splits its segment (10 MiB left), and
    # step 2's 30 MiB tensor fits nowhere: a second 30 MiB segment. 60 MiB reserved, 50 allocated.
    s = replay([(0, 30 * MiB), (0, 0), (1, 20 * MiB), (2, 30 * MiB)])
    assert (s.peak_reserved_bytes, s.peak_allocated_bytes, s.reserve_bytes) == (60 * MiB, 50 * MiB, 10 * MiB)
    assert s.peak_in_use_bytes == 60 * MiB


def test_freed_neighbours_merge_and_nothing_is_given_back():
    # Two 8 MiB tensors split one 20 MiB segment (8 + 8 + 4 left); freeing both merges the segment
    # back to one 20 MiB block, which then holds an 18 MiB tensor without a new cudaMalloc.
    s = replay([(0, 8 * MiB), (1, 8 * MiB), (0, 0), (1, 0), (2, 18 * MiB)])
    assert (s.peak_reserved_bytes, s.segments) == (20 * MiB, 1)
    # Without the merge (one neighbour still live) the 18 MiB would need a segment of its own.
    s = replay([(0, 8 * MiB), (1, 8 * MiB), (0, 0), (2, 18 * MiB)])
    assert (s.peak_reserved_bytes, s.segments) == (38 * MiB, 2)


def test_best_fit_takes_the_smallest_block_that_fits():
    # Free 24 MiB and 40 MiB segments; a 22 MiB request takes the 24 MiB one (best fit; 2 MiB left
    # is more than 1 MiB, so it is split), and a 38 MiB request still finds the 40 MiB one.
    s = replay([(0, 24 * MiB), (1, 40 * MiB), (0, 0), (1, 0), (2, 22 * MiB), (3, 38 * MiB)])
    assert (s.peak_reserved_bytes, s.segments) == (64 * MiB, 2)


def test_in_use_counts_segments_holding_a_live_block():
    # After the 30 MiB tensor is freed its segment holds nothing, so it could be released on a
    # failed cudaMalloc: in use at the peak are the second segment and the split first one.
    s = replay([(0, 30 * MiB), (1, 30 * MiB), (0, 0), (1, 0), (2, 40 * MiB)])
    assert (s.peak_reserved_bytes, s.peak_in_use_bytes) == (100 * MiB, 60 * MiB)


def test_repeated_fixed_steps_reuse_their_blocks():
    step = StepTensors(layers=3, saved=(24 * MiB, 12 * MiB), forward_temp=(30 * MiB,), head=(50 * MiB,), backward_temp=(14 * MiB,))
    one, many = replay_steps((step,)), replay_steps((step,) * 5)
    assert many.peak_reserved_bytes == one.peak_reserved_bytes and many.segments == one.segments


def test_a_longer_step_after_shorter_ones_reserves_more():
    def step(tokens: int) -> StepTensors:
        return StepTensors(layers=4, saved=(tokens * 16_384, tokens * 4096), head=(tokens * 65_536,), backward_temp=(tokens * 16_384,))

    fixed = replay_steps((step(2048),) * 4)
    varied = replay_steps((step(700), step(1400), step(1000), step(2048)))
    assert varied.peak_allocated_bytes == fixed.peak_allocated_bytes
    assert varied.peak_reserved_bytes > fixed.peak_reserved_bytes


def test_split_per_token():
    assert split_per_token(100, [(30, 3)]) == (30, 30, 30, 10)
    assert split_per_token(50, [(30, 3)]) == (30, 20)
    assert split_per_token(20, [(30, 3)]) == (20,)
    assert allocator.split_per_token(60, [(30, 2)]) == (30, 30)


@pytest.fixture(scope="module")
def llama():
    return resolve_catalog("meta-llama/Llama-3.2-3B-Instruct").spec


def _reserve(spec, **kw):
    w = Workload(mode="lora", precision="bf16", context_length=2048, batch_size=4, gradient_checkpointing=True, **kw)
    b = estimate(spec, w).breakdown
    return b.allocator_reserve_bytes, b.torch_allocated_bytes


def test_fixed_shapes_keep_the_flat_reserve(llama):
    reserve, allocated = _reserve(llama)
    assert reserve == int(allocated * RESERVED_FRACTION_TRAINING)
    # One length (as long as the context) and packed rows are fixed shapes too.
    for kw in ({"sample_lengths": (2048,) * 5}, {"sample_lengths": (100, 900, 2048), "packing": "packed"}):
        r, a = _reserve(llama, **kw)
        assert r == int(a * RESERVED_FRACTION_TRAINING)


def test_the_reserve_moves_with_the_distribution(llama):
    narrow = _reserve(llama, sample_lengths=(1900, 1950, 2000, 2048))
    wide = _reserve(llama, sample_lengths=(*range(100, 1600, 70), 2048))  # the longest is rare
    assert narrow[1] == wide[1]  # the peak step holds the longest sequence either way
    flat = int(wide[1] * RESERVED_FRACTION_TRAINING)
    assert wide[0] > flat + 2**28  # > 256 MiB above the flat 5% for this spread
    # A narrow spread under the longest costs less here, but still more than fixed shapes: the
    # longest step's tensors are a little larger than every cached block.
    assert flat < narrow[0] < wide[0]


def test_the_note_says_what_the_allocator_cache_is(llama):
    w = Workload(mode="lora", precision="bf16", context_length=2048, batch_size=4, sample_lengths=(64, 500, 2048))
    notes = [n for n in estimate(llama, w).notes if n.startswith("Allocator cache")]
    assert len(notes) == 1 and "calculator/allocator.py" in notes[0] and "empty_cache" in notes[0]
    assert not [n for n in estimate(llama, dataclasses.replace(w, sample_lengths=())).notes if n.startswith("Allocator cache")]


def test_a_full_card_releases_whole_cached_segments_and_retries():
    # 30 MiB freed, then 40 MiB: unbounded, both segments stay reserved (70 MiB). On a 50 MiB card
    # the 40 MiB cudaMalloc fails, the free 30 MiB segment is released, and the retry fits.
    events = [(0, 30 * MiB), (0, 0), (1, 40 * MiB)]
    assert replay(events).peak_reserved_bytes == 70 * MiB
    s = replay(events, capacity_bytes=50 * MiB)
    assert (s.peak_reserved_bytes, s.segments) == (40 * MiB, 2)
    # A split segment is not released: 20 MiB of the 30 MiB one stays live, so 40 MiB more needs 70 MiB.
    pinned = [(0, 30 * MiB), (0, 0), (1, 20 * MiB), (2, 40 * MiB)]
    with pytest.raises(MemoryError):
        replay(pinned, capacity_bytes=60 * MiB)
    assert allocator.smallest_capacity(pinned) == 70 * MiB == replay(pinned).peak_in_use_bytes
    assert allocator.smallest_capacity(events) == 40 * MiB
