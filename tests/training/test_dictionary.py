from __future__ import annotations

from training.dictionary import write_dictionary


def test_committed_user_dictionary_is_up_to_date() -> None:
    path, n, up_to_date = write_dictionary(check=True)
    assert up_to_date, f"{path} is stale: run `triage data dict` and commit it"
    assert n > 500
