"""10,000 malformed messages, made by mutating real ones: none crashes the intake, and each
one is stored (a case, or a message kept for a person) or refused with a clear error.

Every generated message goes through ``parse_message`` and ``to_inbound``. Storing and
routing costs far more than parsing (some 30 ms of CPU per message on SQLite, against a few
for parsing), so to keep the run near a minute every ``RECEIVE_EVERY``-th message (500 of the
10,000) also goes through ``Desk.receive`` into one SQLite database, and the test counts that
each of those became a stored message (or a recognised duplicate) or a ``DeskError`` refusal
with a message.

The run is derandomized: the same 10,000 messages every time, so CI is stable.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from desk.errors import DeskError
from desk.models import Message
from desk.pipeline import Desk, Received
from mail.parse import parse_message, to_inbound
from tests.hostile.support import corpus, seeded_desk
from tests.support import FakeClock

pytestmark = pytest.mark.slow

EXAMPLES = 10_000
RECEIVE_EVERY = 20

BAD_CHARSETS = [
    "utf-16", "utf-32-be", "utf-7", "x-unknown", "unknown-8bit", "rot13", "hex", "base64",
    "zlib", "idna", "punycode", "bogus-charset", "", '"', "utf-8\x00", "iso-2022-jp",
    "windows-1251", "koi8-r", "gb2312", "big5", "shift_jis", "ks_c_5601-1987", "mbcs",
    "undefined", "cp65001", "a" * 300,
]
ENCODED_WORDS = [
    "=?utf-8?b?!!!notbase64?=", "=?utf-8?q?=ZZ=?=", "=?bogus?q?hello?=", "=?utf-8?x?abc?=",
    "=?utf-8?b?", "=?=?=?", "=?utf-8?B?w6k=?==?utf-8?B?", "=?utf-16?b?2D3eAA==?=",
    "=??q?empty?=", "=?utf-8*en?q?lang?=", "=?utf-8?q?" + "=C3" * 40 + "?=",
    "=?rot13?q?uryyb?=", "=?utf-8?b?" + "A" * 5000 + "?=", "=?iso-8859-1?q?caf=E9?=\x00",
]
CTE = ["base64", "quoted-printable", "x-uuencode", "bogus", "8bit", "binary", "7bit",
       "BASE64 ", "quoted-printable; x=1"]
GARBAGE = [b"===!!!**", b"=ZZ=\r\n=", b"\xff\xfe\x00\x00", b"begin 644 x\r\n", b"=\r\n=\r\n",
           b"QUJD" * 3 + b"=", b"=?", b"--", b"\r\n.\r\n", b"\x1b$B", b"%PDF-1.4\r\n"]
HEADERS = ["From", "Message-ID", "Date", "Content-Type", "MIME-Version", "To", "Subject",
           "Content-Transfer-Encoding", "In-Reply-To", "References"]

CORPUS = corpus()


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """Header block, the blank-line separator, body (any of them may be empty)."""
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw, b"", b""
    return raw[:match.start()], raw[match.start():match.end()], raw[match.end():]


@st.composite
def malformed(draw: st.DrawFn) -> bytes:
    # Indices, not the messages themselves: Hypothesis keeps what it draws.
    raw = CORPUS[draw(st.integers(0, len(CORPUS) - 1))]
    ops = [OPERATIONS[i] for i in draw(st.lists(st.integers(0, len(OPERATIONS) - 1),
                                                 min_size=1, max_size=3))]
    # Hypothesis picks the message and the kinds of damage; positions, sizes and bytes come
    # from a seeded generator, which keeps generating 10,000 examples cheap.
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for op in ops:
        raw = _mutate(rng, op, raw)
    return raw


OPERATIONS = ["truncate", "flip", "nul", "boundary", "charset", "huge_header", "drop_header",
              "nest", "transfer_encoding", "encoded_words", "eight_bit_header", "line_ends",
              "splice"]


def _mutate(rng: random.Random, op: str, raw: bytes) -> bytes:  # noqa: C901 - one per kind
    size = len(raw)
    at = rng.randint(0, size)
    if op == "truncate":
        return raw[:at]
    if op == "flip":
        data = bytearray(raw)
        for _ in range(rng.randint(1, 16)):
            if data:
                data[rng.randint(0, len(data) - 1)] = rng.randint(0, 255)
        return bytes(data)
    if op == "nul":
        return raw[:at] + b"\x00" * rng.randint(1, 64) + raw[at:]
    if op == "boundary":
        found = re.search(rb'boundary="?([^";\r\n]+)"?', raw, re.I)
        how = rng.choice(["redeclare", "unclosed", "cut_delimiters", "empty"])
        if found is None or how == "empty":
            head, sep, body = _split(raw)
            return (head + b'\r\nContent-Type: multipart/mixed; boundary=""' + (sep or b"\r\n\r\n")
                    + b"--\r\n" + body + b"\r\n----\r\n")
        token = found.group(1)
        if how == "redeclare":
            return raw.replace(found.group(0), b'boundary="' + token[::-1] + b'"', 1)
        if how == "unclosed":
            return raw.replace(b"--" + token + b"--", b"")
        return raw.replace(b"--" + token, b"--" + token[: max(1, len(token) // 2)])
    if op == "charset":
        bad = rng.choice(BAD_CHARSETS).encode("utf-8", "surrogateescape")
        if re.search(rb"charset=", raw, re.I):
            return re.sub(rb'charset="?[^";\s]*"?', b'charset="' + bad + b'"', raw, flags=re.I)
        return b'Content-Type: text/plain; charset="' + bad + b'"\r\n' + raw
    if op == "huge_header":
        length = rng.choice([500, 2_000, 8_000])
        name = rng.choice([b"Subject", b"X-Huge", b"From", b"References",
                                     b"Content-Type"])
        shape = rng.choice(["flat", "folded", "ids"])
        if shape == "flat":
            value = b"A" * length
        elif shape == "folded":
            value = b"\r\n ".join([b"w" * 70] * (length // 72))
        else:
            value = b" ".join(b"<%d@x.test>" % i for i in range(length // 12))
        return name + b": " + value + b"\r\n" + raw
    if op == "drop_header":
        name = rng.choice(HEADERS).encode()
        head, sep, body = _split(raw)
        kept = re.sub(rb"(?im)^" + re.escape(name) + rb":.*(\r?\n[ \t].*)*(\r?\n|$)", b"", head)
        return kept + sep + body
    if op == "nest":
        depth = rng.choice([1, 2, 5, 39, 41, 50])
        head, sep, body = _split(raw)
        keep = b"\r\n".join(line for line in head.splitlines()
                            if line[:5].lower() in (b"from:", b"subje", b"messa"))
        inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
        for level in range(depth):
            mark = b"b%d" % level
            inner = (b"Content-Type: multipart/mixed; boundary=" + mark + b"\r\n\r\n--" + mark
                     + b"\r\n" + inner + b"\r\n--" + mark + b"--\r\n")
        return keep + b"\r\nMIME-Version: 1.0\r\n" + inner
    if op == "transfer_encoding":
        cte = rng.choice(CTE).encode()
        junk = rng.choice(GARBAGE)
        head, sep, body = _split(raw)
        head = re.sub(rb"(?im)^Content-Transfer-Encoding:.*$", b"", head)
        cut = rng.randint(0, len(body))
        return (head + b"\r\nContent-Transfer-Encoding: " + cte + (sep or b"\r\n\r\n")
                + body[:cut] + junk + body[cut:])
    if op == "encoded_words":
        word = rng.choice(ENCODED_WORDS).encode("utf-8", "surrogateescape")
        payload = "".join(rng.choice("ABCxyz=?_+/!0123 ") for _ in range(rng.randint(0, 40)))
        made = ("=?" + rng.choice(["utf-8", "bogus", "", "utf-16", "x"]) + "?"
                + rng.choice(["b", "q", "B", "Q", "x", ""]) + "?" + payload + "?=")
        name = rng.choice([b"Subject", b"From", b"To", b"Content-Disposition"])
        if name == b"From":
            value = word + b" " + made.encode() + b" <" + word[:20] + b"@x.test>"
        elif name == b"Content-Disposition":
            value = b'attachment; filename="' + word + b'"'
        else:
            value = word + b" " + made.encode()
        head, sep, body = _split(raw)
        head = re.sub(rb"(?im)^" + name + rb":.*$", b"", head)
        return name + b": " + value + b"\r\n" + head + sep + body
    if op == "eight_bit_header":
        junk = bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 40)))
        return b"Subject: " + junk + b"\r\nFrom: " + junk + b" <a@b.test>\r\n" + raw
    if op == "line_ends":
        how = rng.choice(["cr", "lf", "crcrlf", "mixed"])
        if how == "cr":
            return raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        if how == "lf":
            return raw.replace(b"\r\n", b"\n")
        if how == "crcrlf":
            return raw.replace(b"\r\n", b"\r\r\n")
        return raw[:at].replace(b"\r\n", b"\n") + raw[at:]
    other = rng.choice(CORPUS)
    return raw[:at] + other[rng.randint(0, len(other)):]


def _nested(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nHow do we fix our roads?"
    for level in range(depth):
        inner = (b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (level, level)
                 + inner + b"\r\n--n%d--\r\n" % level)
    return b"From: a@fallriverma.org\r\nMIME-Version: 1.0\r\n" + inner


@dataclass
class Tally:
    inputs: int = 0
    parsed: int = 0
    sent_to_desk: int = 0
    stored: list[tuple[Received, bool]] = field(default_factory=list)  # (result, automatic)
    duplicates: list[tuple[Received, str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def test_ten_thousand_malformed_messages_are_stored_or_refused(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    clock = FakeClock()
    desk: Desk = loop.run_until_complete(seeded_desk(tmp_path / "fuzz.db", clock))
    tally = Tally()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example],
              print_blob=True)
    @given(raw=malformed(), fresh_id=st.booleans())
    @example(raw=b"", fresh_id=False)
    @example(raw=b"\r\n\r\n", fresh_id=False)
    @example(raw=b"\x00" * 4096, fresh_id=True)
    @example(raw=b"Subject: " + b"x" * 1_000_000 + b"\r\n\r\nbody", fresh_id=True)
    @example(raw=b"From: <>\r\nContent-Type: multipart/mixed\r\n\r\n--\r\n--", fresh_id=True)
    @example(raw=b"References: " + b"A" * 300_000 + b"\r\n\r\nbody", fresh_id=True)
    @example(raw=b"From: " + b", ".join(b"<%d@x.test>" % i for i in range(20_000))
             + b"\r\n\r\nbody", fresh_id=True)
    @example(raw=_nested(300), fresh_id=True)
    def one(raw: bytes, fresh_id: bool) -> None:
        tally.inputs += 1
        if fresh_id:
            # Most messages get their own Message-ID, so they reach storage rather than
            # being recognised as a duplicate of the real message they were made from.
            raw = b"Message-ID: <fuzz-%d@hostile.test>\r\n" % tally.inputs + raw
        parsed = parse_message(raw)
        inbound = to_inbound(parsed, raw, clock.now())
        assert inbound.channel == "email" and inbound.external_id
        assert inbound.raw == raw and isinstance(inbound.text, str)
        assert inbound.received_at.tzinfo is not None
        tally.parsed += 1
        if tally.inputs % RECEIVE_EVERY:
            return
        tally.sent_to_desk += 1
        try:
            received = loop.run_until_complete(desk.receive(inbound))
        except DeskError as exc:
            assert str(exc).strip(), "a refusal must say why"
            tally.refusals.append(f"{type(exc).__name__}: {exc}")
            return
        if received.duplicate:
            tally.duplicates.append((received, inbound.external_id))
        else:
            tally.stored.append((received, inbound.is_auto_reply or inbound.is_bounce))

    try:
        one()
        stored_rows, routed_rows = loop.run_until_complete(_counts(desk))
        duplicate_targets = loop.run_until_complete(
            _existing(desk, [r.message_id for r, _ in tally.duplicates]))
    finally:
        loop.run_until_complete(desk.store.close())
        loop.close()

    assert tally.inputs >= EXAMPLES and tally.parsed == tally.inputs
    # Nothing sent to the desk vanished: stored, recognised as already stored, or refused.
    assert tally.sent_to_desk >= EXAMPLES // RECEIVE_EVERY
    assert (len(tally.stored) + len(tally.duplicates) + len(tally.refusals)
            == tally.sent_to_desk)
    assert stored_rows == len(tally.stored) == routed_rows
    # A duplicate points at a message we really hold.
    assert duplicate_targets == {r.message_id for r, _ in tally.duplicates}
    # A person's message opens or joins a case; only automatic mail may stay case-less.
    for received, automatic in tally.stored:
        assert received.case_id is not None or automatic, received
    # The mutations were not all rejected up front: most of what reached the desk was kept.
    assert len(tally.stored) > tally.sent_to_desk // 2


async def _counts(desk: Desk) -> tuple[int, int]:
    async with desk.store.session() as session:
        stored = await session.execute(
            select(func.count(Message.id)).where(Message.direction == "in"))
        routed = await session.execute(select(func.count(Message.id)).where(
            Message.direction == "in", Message.processed_at.is_not(None)))
        return int(stored.scalar_one()), int(routed.scalar_one())


async def _existing(desk: Desk, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    async with desk.store.session() as session:
        found = await session.execute(select(Message.id).where(Message.id.in_(set(ids))))
        return set(found.scalars())
