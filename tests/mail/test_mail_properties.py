"""Property tests: parsing never raises, whatever bytes arrive."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.parse import ParsedEmail, parse_message
from mail.reply import extract_reply
from tests.mail.mail_test_support import DATA, SHARED_EMAILS


def _corpus() -> list[bytes]:
    paths = sorted((DATA / "eml").glob("*.eml"))
    if SHARED_EMAILS.is_dir():
        paths += sorted((SHARED_EMAILS / "raw").glob("*.eml"))
        paths += [p for p in sorted(SHARED_EMAILS.glob("talon_standard_*.txt"))
                  if not p.name.endswith(".expected.txt")]
    return [p.read_bytes() for p in paths]


CORPUS = _corpus()
INTERESTING = [b"\n", b"\r\n", b"--", b"=?utf-8?b?", b"?=", b"boundary=", b"Content-Type: ",
               b"multipart/mixed", b"base64", b"quoted-printable", b"=", b"\xff", b"\x00",
               b"charset=", b"message/rfc822", b"\n\n", b">", b"<", b"format=flowed"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        if action == "flip":
            raw[at] = draw(st.integers(0, 255))
        elif action == "insert":
            raw[at:at] = draw(st.sampled_from(INTERESTING) | st.binary(max_size=16))
        elif action == "delete":
            del raw[at : at + draw(st.integers(1, 64))]
        elif action == "truncate":
            del raw[at:]
        else:
            other = draw(st.sampled_from(CORPUS))
            raw[at:] = other[draw(st.integers(0, max(0, len(other) - 1))) :]
    return bytes(raw)


def _check(parsed: ParsedEmail) -> None:
    assert isinstance(parsed.text, str) and isinstance(parsed.reply_text, str)
    assert isinstance(parsed.problems, list)
    assert parsed.date is None or parsed.date.tzinfo is not None
    out = parsed.as_json()
    assert isinstance(out["attachments"], list)
    for attachment in parsed.attachments:
        assert attachment.size >= 0
        assert (attachment.data is None) == (attachment.refused_reason is not None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(parse_message(raw))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.integers(0, 20_000))
def test_mutated_real_messages_never_raise(raw: bytes, limit: int) -> None:
    _check(parse_message(raw, max_attachment_bytes=limit))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_extract_reply_never_raises_and_never_invents_text(text: str) -> None:
    reply = extract_reply(text)
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    for line in reply.split("\n"):
        assert line in normalised
