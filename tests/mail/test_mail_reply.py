"""Reply extraction: the shared real-world pairs, and our own cases per client and language."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from mail.parse import parse_message
from mail.reply import extract_reply
from tests.mail.mail_test_support import (
    DATA,
    SHARED_EMAILS,
    ReplyPair,
    comparable,
    load_reply_pairs,
    matches,
    shared_emails_or_skip,
)

# The suites disagree about mobile footers and "-- " blocks. Our policy strips every signature
# (as GitHub's and Crisp's parsers do), so these two talon expectations, which keep them, differ.
POLICY_DIFFERENCES = {
    "talon_standard_iphone": "Hello",
    "talon_standard_sparrow": "Hello",
}
REQUIRED_SCORE = 50


def _body(pair: ReplyPair) -> str:
    if pair.input_kind == "plain_body":
        return pair.raw.decode("utf-8")
    return parse_message(pair.raw).text


def _pairs() -> list[ReplyPair]:
    return load_reply_pairs(SHARED_EMAILS) if SHARED_EMAILS.is_dir() else []


@pytest.mark.parametrize("pair", _pairs(), ids=lambda p: p.name)
def test_shared_reply_pair(pair: ReplyPair) -> None:
    actual = extract_reply(_body(pair))
    if pair.name in POLICY_DIFFERENCES:
        assert comparable(actual) == POLICY_DIFFERENCES[pair.name]
        assert not matches(actual, pair)
    else:
        assert matches(actual, pair), actual


def test_shared_reply_score() -> None:
    root = shared_emails_or_skip()
    pairs = load_reply_pairs(root)
    assert len(pairs) == 56
    score = sum(matches(extract_reply(_body(pair)), pair) for pair in pairs)
    assert score >= REQUIRED_SCORE
    assert score == len(pairs) - len(POLICY_DIFFERENCES)


def test_first_text_plain_part_is_what_the_comparator_expects() -> None:
    # Our MIME walk and the stdlib's agree on the decoded first text/plain part.
    root = shared_emails_or_skip()
    for pair in load_reply_pairs(root):
        if pair.input_kind != "rfc822_message":
            continue
        msg = email.message_from_bytes(pair.raw, policy=policy.default)
        first = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
        stdlib = first.get_content()
        if "flowed" in str(first.get("Content-Type", "")):
            continue  # we also undo format=flowed soft breaks
        assert comparable(parse_message(pair.raw).text) == comparable(stdlib), pair.name


def _own_cases() -> list[Path]:
    return sorted((DATA / "replies").glob("*.expected.txt"))


@pytest.mark.parametrize("expected_path", _own_cases(), ids=lambda p: p.name.split(".")[0])
def test_own_reply_case(expected_path: Path) -> None:
    source = expected_path.with_name(expected_path.name.replace(".expected.txt", ".txt"))
    actual = extract_reply(source.read_text(encoding="utf-8"))
    assert comparable(actual) == comparable(expected_path.read_text(encoding="utf-8"))


def test_own_cases_cover_every_language_and_client() -> None:
    names = {p.name.split(".")[0] for p in _own_cases()}
    for lang in ("en", "es", "fr", "de", "pt", "it", "nl", "pl", "ru", "sv", "no", "da", "fi"):
        assert f"gmail_{lang}" in names
        assert f"outlook_{lang}" in names
    for client in ("gmail_", "outlook_", "outlook_ios", "apple_mail", "iphone_", "thunderbird_"):
        assert any(name.startswith(client) for name in names), client


def test_crlf_input() -> None:
    text = "Yes, please.\r\n\r\nOn Mon, Nov 15, 2021 at 7:42 PM Bob <b@x.org> wrote:\r\n> Hi\r\n"
    assert extract_reply(text) == "Yes, please."


def test_wrapped_quote_lines_are_not_answers() -> None:
    text = (
        "Fine by us.\n\nOn Mon, Nov 15, 2021 at 7:42 PM Bob <b@x.org> wrote:\n\n"
        "> This is a long quoted line that the client re-wrapped because it was much too\n"
        "long to fit\n>\n> Bob\n"
    )
    assert extract_reply(text) == "Fine by us."


def test_only_a_quote_gives_nothing_new() -> None:
    text = "On Mon, Nov 15, 2021 at 7:42 PM Bob <b@x.org> wrote:\n> Hi\n> there\n"
    assert extract_reply(text) == ""


def test_outlook_forward_without_a_note_keeps_the_forwarded_question() -> None:
    text = (
        "From: Pat Lee <plee@springfield.gov>\nSent: Monday, November 15, 2021 7:42 PM\n"
        "To: Jane Smith\nSubject: FW: ADUs\n\nWhich cities allow ADUs by right?\n"
    )
    assert "Which cities allow ADUs by right?" in extract_reply(text)


def test_empty_and_whitespace() -> None:
    assert extract_reply("") == ""
    assert extract_reply("\n \n") == ""
