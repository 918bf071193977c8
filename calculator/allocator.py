"""PyTorch's CUDA caching allocator, replayed: how far reserved memory sits above allocated.

`torch.cuda.max_memory_reserved` exceeds `max_memory_allocated` because the allocator rounds
requests up, carves them out of larger segments, and never gives a segment back to the device
unless `torch.cuda.empty_cache()` is called (or a cudaMalloc fails). With fixed shapes every
training step reuses the blocks of the step before, and the gap stays small. With variable-length
batches, a step of a new length finds cached blocks of the wrong sizes: a longer tensor fits none
of them and takes a new segment, a shorter one splits a longer block and leaves a sliver that the
next long tensor cannot use. The gap then grows with the spread of the lengths; this module
measures it by replaying the allocation / free stream of training steps through a model of the
allocator.

The rules are those of `c10/cuda/CUDACachingAllocator.cpp` (read at pytorch/pytorch commit
001074d25084fdb87a799823e395a50f5ec044d3; the constants and the functions named below are the same
in the torch 2.13 the project runs, and have been since the 20 MiB large buffer arrived in 1.x):

- `round_size`: every request is rounded up to a multiple of `kMinBlockSize` = 512 bytes
  (`roundup_power2_divisions` unset: PYTORCH_CUDA_ALLOC_CONF's default);
- `get_pool`: requests of at most `kSmallSize` = 1 MiB use the small pool, others the large pool;
- `get_allocation_size`: a new segment is `kSmallBuffer` = 2 MiB for a small request,
  `kLargeBuffer` = 20 MiB for a request under `kMinLargeAlloc` = 10 MiB, else the request rounded
  up to `kRoundLarge` = 2 MiB;
- `get_free_block`: best fit, the smallest cached block of the pool that is large enough (the
  pool's `std::set` orders blocks by stream, size, then address), so ties go to the lowest address;
  `max_split_size` is unlimited by default (CUDAAllocatorConfig), so no block is "oversize";
- `should_split`: the found block is split when what remains is at least 512 bytes (small pool)
  or more than 1 MiB (large pool); the request takes the block's start (`alloc_found_block`);
  an unsplit block is handed out whole and counts whole in `allocated_bytes`;
- `free_block` / `try_merge_blocks`: a freed block merges with its free neighbours of the same
  segment and goes back to its pool; nothing returns to the device (`release_cached_blocks`
  runs only from `empty_cache()` or after a failed cudaMalloc);
- `expandable_segments` is off by default (CUDAAllocatorConfig), so segments never grow.

One stream is modelled (a training loop allocates on the default stream), with room on the
device for every new segment: on a card without room, the allocator frees cached unsplit
segments and retries, so a run can fit below the reserved figure at the cost of cudaMalloc calls.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# c10/cuda/CUDACachingAllocator.cpp (see the module docstring for the functions that use them).
MIN_BLOCK_SIZE = 512  # kMinBlockSize: "all sizes are rounded to at least 512 bytes"
SMALL_SIZE = 1 << 20  # kSmallSize: "largest 'small' allocation is 1 MiB"
SMALL_BUFFER = 2 << 20  # kSmallBuffer: "'small' allocations are packed in 2 MiB blocks"
LARGE_BUFFER = 20 << 20  # kLargeBuffer: "'large' allocations may be packed in 20 MiB blocks"
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc: "allocations between 1 and 10 MiB may use kLargeBuffer"
ROUND_LARGE = 2 << 20  # kRoundLarge: "round up large allocations to 2 MiB"

# One event of a stream: (handle, bytes) allocates `bytes` under `handle`; (handle, 0) frees it.
Event = tuple[int, int]


def round_size(nbytes: int) -> int:
    """`round_size`: the block size a request of `nbytes` takes (multiples of 512, at least 512)."""
    if nbytes < MIN_BLOCK_SIZE:
        return MIN_BLOCK_SIZE
    return MIN_BLOCK_SIZE * (-(-nbytes // MIN_BLOCK_SIZE))


def segment_size(block_bytes: int) -> int:
    """`get_allocation_size`: the cudaMalloc a rounded request makes when no cached block fits."""
    if block_bytes <= SMALL_SIZE:
        return SMALL_BUFFER
    if block_bytes < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * (-(-block_bytes // ROUND_LARGE))


def should_split(block_bytes: int, request_bytes: int, *, small: bool) -> bool:
    """`should_split` with the default (unlimited) max_split_size."""
    remaining = block_bytes - request_bytes
    return remaining >= MIN_BLOCK_SIZE if small else remaining > SMALL_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocatorStats:
    """What `torch.cuda.memory_stats()` would report after a replay."""

    peak_allocated_bytes: int  # max_memory_allocated: block sizes handed out (rounded, unsplit remainders included)
    peak_requested_bytes: int  # the same in requested bytes ("requested_bytes.all.peak")
    peak_reserved_bytes: int  # max_memory_reserved: every segment cudaMalloc'd (never released here)
    peak_in_use_bytes: int  # the most bytes of segments holding a live block at once: what a card must hold
    segments: int  # cudaMalloc calls ("num_device_alloc")

    @property
    def reserve_bytes(self) -> int:
        """Reserved above allocated at their peaks: the "allocator cache" of the breakdown."""
        return self.peak_reserved_bytes - self.peak_allocated_bytes


class _Block:
    __slots__ = ("addr", "allocated", "next", "prev", "segment", "size", "small")

    def __init__(self, addr: int, size: int, small: bool, segment: int) -> None:
        self.addr, self.size, self.small, self.segment = addr, size, small, segment
        self.allocated = False
        self.prev: _Block | None = None
        self.next: _Block | None = None


class _Allocator:
    """The allocator's state during one replay (mutable; `replay` is the pure entry point)."""

    def __init__(self, capacity_bytes: int | None = None) -> None:
        self.capacity = capacity_bytes
        self.pools: dict[bool, list[tuple[int, int]]] = {True: [], False: []}  # (size, addr), sorted: the BlockPool set
        self.free_at: dict[int, _Block] = {}
        self.next_addr = 0
        self.allocated = self.requested = self.reserved = self.peak_reserved = 0
        self.peak_allocated = self.peak_requested = 0
        self.segments = 0
        self.segment_bytes: list[int] = []  # size of each segment, by id
        self.segment_live: list[int] = []  # blocks handed out of each segment
        self.in_use = self.peak_in_use = 0  # bytes of segments holding at least one live block

    def malloc(self, nbytes: int) -> tuple[_Block, int]:
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        i = bisect_left(pool, (size, -1))
        if i < len(pool):
            _, addr = pool.pop(i)
            block = self.free_at.pop(addr)
        else:
            seg = segment_size(size)
            if self.capacity is not None and self.reserved + seg > self.capacity:
                self._release_cached()
                if self.reserved + seg > self.capacity:
                    raise MemoryError(f"cudaMalloc of {seg:,} bytes fails with {self.reserved:,} of {self.capacity:,} reserved")
            # cudaMalloc: a fresh address range; segments are never adjacent for merging (prev/next stay None).
            block = _Block(self.next_addr, seg, small, self.segments)
            self.next_addr += seg + SMALL_BUFFER
            self.reserved += seg
            self.peak_reserved = max(self.peak_reserved, self.reserved)
            self.segments += 1
            self.segment_bytes.append(seg)
            self.segment_live.append(0)
        if should_split(block.size, size, small=small):
            rest = _Block(block.addr + size, block.size - size, small, block.segment)
            rest.prev, rest.next = block, block.next
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            block.size = size
            self._cache(rest)
        block.allocated = True
        seg_id = block.segment
        if self.segment_live[seg_id] == 0:
            self.in_use += self.segment_bytes[seg_id]
            if self.in_use > self.peak_in_use:
                self.peak_in_use = self.in_use
        self.segment_live[seg_id] += 1
        self.allocated += block.size
        self.requested += nbytes
        if self.allocated > self.peak_allocated:
            self.peak_allocated = self.allocated
        if self.requested > self.peak_requested:
            self.peak_requested = self.requested
        return block, nbytes

    def free(self, block: _Block, nbytes: int) -> None:
        block.allocated = False
        self.segment_live[block.segment] -= 1
        if self.segment_live[block.segment] == 0:
            self.in_use -= self.segment_bytes[block.segment]
        self.allocated -= block.size
        self.requested -= nbytes
        for neighbour in (block.prev, block.next):
            if neighbour is not None and not neighbour.allocated:
                self._uncache(neighbour)
                if neighbour is block.prev:
                    block.addr = neighbour.addr
                    block.prev = neighbour.prev
                    if block.prev is not None:
                        block.prev.next = block
                else:
                    block.next = neighbour.next
                    if block.next is not None:
                        block.next.prev = block
                block.size += neighbour.size
        self._cache(block)

    def _release_cached(self) -> None:
        """`release_cached_blocks` after a failed cudaMalloc: every cached block that is a whole
        segment (not split) is cudaFree'd. (`release_available_cached_blocks`, tried first, frees
        only blocks of at least max_split_size, so nothing with the default.)"""
        for small in (True, False):
            for size, addr in list(self.pools[small]):
                block = self.free_at[addr]
                if block.prev is None and block.next is None:
                    self._uncache(block)
                    self.reserved -= size

    def _cache(self, block: _Block) -> None:
        insort(self.pools[block.small], (block.size, block.addr))
        self.free_at[block.addr] = block

    def _uncache(self, block: _Block) -> None:
        pool = self.pools[block.small]
        del pool[bisect_left(pool, (block.size, block.addr))]
        del self.free_at[block.addr]


def replay(events: Iterable[Event], *, capacity_bytes: int | None = None) -> AllocatorStats:
    """Run an allocation / free stream through the allocator; (handle, n > 0) allocates n bytes,
    (handle, 0) frees what that handle holds. With `capacity_bytes` (the device's free memory) a
    cudaMalloc that would pass it first releases the cached whole segments, as the allocator does,
    and raises MemoryError (an out-of-memory error) if it still does not fit."""
    a = _Allocator(capacity_bytes)
    live: dict[int, tuple[_Block, int]] = {}
    for handle, nbytes in events:
        if nbytes > 0:
            live[handle] = a.malloc(nbytes)
        else:
            a.free(*live.pop(handle))
    return AllocatorStats(peak_allocated_bytes=a.peak_allocated, peak_requested_bytes=a.peak_requested,
                          peak_reserved_bytes=a.peak_reserved, peak_in_use_bytes=a.peak_in_use, segments=a.segments)


def _runs_within(events: Sequence[Event], capacity_bytes: int) -> bool:
    try:
        replay(events, capacity_bytes=capacity_bytes)
    except MemoryError:
        return False
    return True


def smallest_capacity(events: Sequence[Event], *, resolution_bytes: int = ROUND_LARGE, max_halvings: int | None = None,
                      unbounded: AllocatorStats | None = None) -> int:
    """The least device memory (to `resolution_bytes`, at least 2 MiB) the stream runs in without
    an out-of-memory error, releasing cached whole segments when a cudaMalloc fails: what a card
    has to hold for it (rounded up). Searched between the allocated peak and the peak of segments
    in use (or, when that is not enough, the unbounded reserve, which always is); `max_halvings`
    coarsens the resolution to 1/2^k of that range, bounding the replays to k + 2."""
    unbounded = unbounded or replay(events)  # the replay without a limit, when the caller has it already
    low, high = unbounded.peak_allocated_bytes, unbounded.peak_in_use_bytes
    if not _runs_within(events, high):
        low, high = high, unbounded.peak_reserved_bytes
    step = max(resolution_bytes, ROUND_LARGE)
    if max_halvings is not None:
        step = max(step, -(-(high - low) >> max_halvings))
    lo, hi = low // step, -(-high // step)
    while lo < hi:
        mid = (lo + hi) // 2
        if _runs_within(events, mid * step):
            hi = mid
        else:
            lo = mid + 1
    return min(hi * step, unbounded.peak_reserved_bytes)


# --------------------------------------------------------------------------------------------
# Training steps as allocation streams
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTensors:
    """The tensors one training step allocates, in bytes, at that step's shape.

    Per decoder layer, in the forward: `saved` (kept for backward) and `forward_temp` (freed
    before the next layer). At the end of the forward: `head` (logits and loss buffers, freed when
    backward starts). Per layer, in backward (last layer first): `recompute` (with gradient
    checkpointing, the layer's saved tensors rebuilt, freed once it is done), `backward_temp`
    (gradient buffers), then the layer's `saved` are freed and its parameter `grads` created,
    which live until `zero_grad(set_to_none=True)` after the optimizer step."""

    layers: int
    saved: tuple[int, ...] = ()
    forward_temp: tuple[int, ...] = ()
    head: tuple[int, ...] = ()
    recompute: tuple[int, ...] = ()
    backward_temp: tuple[int, ...] = ()
    grads: tuple[int, ...] = ()


def step_events(step: StepTensors, first_handle: int = 0) -> list[Event]:
    """The allocation / free stream of one step (handles from `first_handle` up)."""
    events: list[Event] = []
    h = first_handle

    def alloc(sizes: Sequence[int]) -> list[int]:
        nonlocal h
        out = []
        for n in sizes:
            if n > 0:
                events.append((h, n))
                out.append(h)
                h += 1
        return out

    def free(handles: Sequence[int]) -> None:
        events.extend((x, 0) for x in handles)

    saved_by_layer = []
    for _ in range(step.layers):
        saved_by_layer.append(alloc(step.saved))
        free(alloc(step.forward_temp))
    head = alloc(step.head)
    grads: list[int] = []
    for i, layer in enumerate(reversed(saved_by_layer)):
        recompute = alloc(step.recompute)
        temp = alloc(step.backward_temp)
        if i == 0:
            free(head)  # the loss's buffers go once the first layer's gradient exists
        free(temp)
        free(recompute)
        free(layer)
        grads += alloc(step.grads)
    free(grads)  # optimizer.step(), then zero_grad(set_to_none=True)
    return events


@lru_cache(maxsize=1024)
def replay_steps(steps: tuple[StepTensors, ...]) -> AllocatorStats:
    """Replay consecutive training steps (cached: the UI asks for the same steps on every rerun)."""
    events: list[Event] = []
    for step in steps:
        events += step_events(step, first_handle=len(events))
    return replay(events)


@lru_cache(maxsize=1024)
def capacity_for_steps(steps: tuple[StepTensors, ...], *, max_halvings: int | None = None) -> int:
    """`smallest_capacity` of consecutive training steps (cached like `replay_steps`)."""
    events: list[Event] = []
    for step in steps:
        events += step_events(step, first_handle=len(events))
    return smallest_capacity(events, max_halvings=max_halvings, unbounded=replay_steps(steps))


def split_per_token(total_per_token: int, widths: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """Bytes per token of the tensors that make up `total_per_token`: for each (width, at most)
    in `widths`, up to that many tensors of that width while they fit, then one tensor with
    what is left. A decoder layer's saved set is a few tensors of the MLP's width and many of the
    hidden width; the wide ones decide which cached blocks fit."""
    out: list[int] = []
    left = total_per_token
    for width, most in widths:
        for _ in range(most):
            if width <= 0 or left < width:
                break
            out.append(width)
            left -= width
    if left > 0:
        out.append(left)
    return tuple(out)
