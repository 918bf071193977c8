"""A dataset's sequence lengths as the calculator takes them: read from text, bounded, summarised.

Real datasets are not one length: padded batches pad to the longest sequence of each batch, and
the caching allocator reserves more as shapes change (calculator/allocator.py). A user gives the
lengths as a pasted or uploaded list (one per token count: `120, 340 512\\n...`, or a JSON list),
and the calculator keeps a summary: at most `MAX_SUMMARY_POINTS` evenly spaced quantiles (the
shortest and the longest always among them), which is what a link carries and what the estimate
replays. Every read is bounded before it is parsed: text above `MAX_TEXT_CHARS`, more than
`MAX_LENGTHS` numbers, or a length outside 1..`MAX_CONTEXT_TOKENS` is refused with a message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import InvalidWorkloadError
from .workload import MAX_CONTEXT_TOKENS

# A pasted or uploaded list: 1 MB of text holds ~100k lengths of up to 7 digits and separators,
# more than a dataset sample needs for its quantiles; past it the text is refused unread.
MAX_TEXT_CHARS = 1_000_000
MAX_LENGTHS = 200_000
# Points kept: 32 quantiles resolve a distribution's shape (median, tails) and keep a link short
# (32 x at most 8 characters).
MAX_SUMMARY_POINTS = 32
# A link's `lengths=` text: 32 numbers of up to 8 digits with commas, with room to spare.
MAX_LINK_CHARS = 600

_SEPARATORS = re.compile(r"[\s,;\[\]]+")


def parse_lengths(text: str, *, max_chars: int = MAX_TEXT_CHARS) -> tuple[int, ...]:
    """Whole token counts from `text` (separated by commas, semicolons, spaces or new lines; a
    JSON list works too). Raises InvalidWorkloadError saying what is wrong."""
    if len(text) > max_chars:
        raise InvalidWorkloadError(f"sample lengths: {len(text):,} characters is more than the {max_chars:,} read; "
                                   "give a sample of the dataset's lengths.")
    items = [s for s in _SEPARATORS.split(text) if s]
    if len(items) > MAX_LENGTHS:
        raise InvalidWorkloadError(f"sample lengths: {len(items):,} numbers is more than the {MAX_LENGTHS:,} read; give a sample.")
    out = []
    for item in items:
        if not item.isdigit() or len(item) > 9:
            raise InvalidWorkloadError(f"sample lengths must be whole token counts; {item[:20]!r} is not one.")
        n = int(item)
        if not 1 <= n <= MAX_CONTEXT_TOKENS:
            raise InvalidWorkloadError(f"a sample length must be from 1 to {MAX_CONTEXT_TOKENS:,} tokens; got {n:,}.")
        out.append(n)
    return tuple(out)


def summarise_lengths(lengths: Sequence[int], *, points: int = MAX_SUMMARY_POINTS) -> tuple[int, ...]:
    """The lengths themselves (sorted) when there are at most `points`, else `points` evenly spaced
    quantiles (nearest rank): the shortest and the longest are always kept, since the longest
    sets the peak of a padded batch."""
    ordered = sorted(lengths)
    if len(ordered) <= points:
        return tuple(ordered)
    last = len(ordered) - 1
    return tuple(ordered[round(i * last / (points - 1))] for i in range(points))


def format_lengths(lengths: Sequence[int]) -> str:
    """The comma-separated text a link and the input box carry."""
    return ",".join(str(n) for n in lengths)


def describe_lengths(lengths: Sequence[int]) -> str:
    """One line for the page: how many, median, 90th percentile, longest."""
    if not lengths:
        return "every sequence as long as the context"
    ordered = sorted(lengths)

    def q(f: float) -> int:
        return ordered[round(f * (len(ordered) - 1))]

    return f"{len(ordered)} lengths: shortest {ordered[0]:,}, median {q(0.5):,}, p90 {q(0.9):,}, longest {ordered[-1]:,} tokens"
