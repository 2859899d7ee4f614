"""The IMAP sequence sets the intake flags and moves handled messages with."""

from __future__ import annotations

import pytest

from mail.imap import uid_set


@pytest.mark.parametrize(("uids", "expected"), [
    ([7], "7"),
    ([1, 2, 3, 7], "1:3,7"),
    ([9, 3, 4, 3, 10, 12], "3:4,9:10,12"),
    (list(range(1, 51)), "1:50"),
])
def test_uid_set_collapses_runs(uids: list[int], expected: str) -> None:
    assert uid_set(uids) == expected
