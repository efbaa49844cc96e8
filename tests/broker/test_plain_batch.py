"""The plain-batch fast path stores what the general path would have stored (decoded), for any
entries and batch properties; anything it does not handle goes to the general path."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmq.broker.handlers.plain_batch import plain_batch
from shmq.message.batch import encode_batch_body
from shmq.message.properties import decode_properties, encode_properties
from shmq.message.taghash import tag_hash

CLUSTER = "DefaultCluster"
NAMES = ["WAIT", "TAGS", "KEYS", "UNIQ_KEY", "CLUSTER", "XWAIT", "WAITX", "ATAGS", "a", "b"]
_props = st.dictionaries(st.sampled_from(NAMES), st.text(
    alphabet=st.characters(blacklist_characters="\x01\x02", blacklist_categories=("Cs",)),
    max_size=12), max_size=6)


def expected(entry: dict[str, str], shared: dict[str, str]) -> dict[str, str]:
    """What send.py's general path stores for one entry."""
    merged = {**entry, **shared}
    if "UNIQ_KEY" in entry:
        merged["UNIQ_KEY"] = entry["UNIQ_KEY"]
    merged.pop("WAIT", None)
    merged["CLUSTER"] = CLUSTER
    return merged


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(_props, min_size=1, max_size=8), shared=_props,
       bodies=st.lists(st.binary(min_size=1, max_size=40), min_size=8, max_size=8))
def test_stored_properties_decode_to_what_the_general_path_stores(
        entries: list[dict[str, str]], shared: dict[str, str], bodies: list[bytes]) -> None:
    body = encode_batch_body((3, bodies[i], props) for i, props in enumerate(entries))
    shared_text = encode_properties(shared).decode() if shared else None
    got = plain_batch(body, shared_text, CLUSTER, 1 << 20)
    assert got is not None
    assert got.flag == 3
    assert got.bodies == bodies[:len(entries)]
    for i, entry in enumerate(entries):
        want = expected(entry, shared)
        assert decode_properties(got.properties[i]) == want
        assert int(got.tags[i]) == tag_hash(want.get("TAGS"))


def test_wait_is_removed_and_cluster_appended() -> None:
    body = encode_batch_body([(0, b"x", {"WAIT": "true", "TAGS": "A", "XWAIT": "1"})])
    got = plain_batch(body, "WAIT\x01false\x02", CLUSTER, 100)
    assert got is not None
    assert got.properties[0] == b"TAGS\x01A\x02XWAIT\x011\x02CLUSTER\x01DefaultCluster\x02"
    assert int(got.tags[0]) == tag_hash("A")


@pytest.mark.parametrize("case", ["different flags", "empty body", "oversized body",
                                  "truncated", "bad lengths", "no entry"])
def test_what_it_does_not_handle_goes_to_the_general_path(case: str) -> None:
    one = encode_batch_body([(0, b"abc", {"TAGS": "A"})])
    body = {
        "different flags": encode_batch_body([(0, b"a", {}), (1, b"b", {})]),
        "empty body": encode_batch_body([(0, b"", {})]),
        "oversized body": encode_batch_body([(0, b"x" * 101, {})]),
        "truncated": one[:-3],
        "bad lengths": one[:16] + struct.pack(">i", 9999) + one[20:],
        "no entry": b"",
    }[case]
    assert plain_batch(body, None, CLUSTER, 100) is None
