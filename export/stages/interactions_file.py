"""A user's own interactions for the export stage: the events file (edgerec.events, the one reader) split
leave-last-out per user (interactions.Split). Users with fewer than MIN_POSITIVES kept events are dropped
and counted; a split with no user left is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgerec.events import MAX_UNKNOWN_SHARE, EventColumns, EventsError, EventsReport, read_events

from .interactions import MIN_POSITIVES, Split, split_leave_last_out

# The export stage's names for the runtime's: one reader, one set of rules.
InteractionColumns = EventColumns
InteractionsError = EventsError


@dataclass(frozen=True)
class InteractionsReport(EventsReport):
    """The events file's counts (``users``: users in the split) and the users dropped with fewer than
    MIN_POSITIVES kept events."""

    users_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def read_interactions(path: str | Path, item_ids: Sequence[str], columns: InteractionColumns = InteractionColumns(),
                      *, min_rating: float | None = None, max_unknown_share: float = MAX_UNKNOWN_SHARE
                      ) -> tuple[Split, InteractionsReport]:
    """The leave-last-out split of the events in ``path`` over the catalogue ``item_ids`` (rows in that order)."""
    row_of: dict[str, int] = {}
    for row, item_id in enumerate(item_ids):
        if item_id in row_of:
            raise InteractionsError(f"the catalogue's ids are not unique: {item_id!r} appears twice")
        row_of[item_id] = row
    per_user, read = read_events(path, row_of, columns, min_rating=min_rating, max_unknown_share=max_unknown_share)
    split = split_leave_last_out(per_user, len(item_ids))
    if split.users == 0:
        raise InteractionsError(f"{path}: no user has {MIN_POSITIVES} or more kept events ({read.events:,} events, "
                                f"{read.users:,} users): nothing to train or evaluate on")
    report = InteractionsReport(read.events, read.kept, read.unknown_items, read.below_min_rating, split.users,
                                read.users - split.users)
    return split, report
