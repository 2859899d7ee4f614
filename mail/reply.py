"""Reply extraction: keep only what the sender newly wrote.

The text is split into lines and each line is classified: quoted (``>``), the start of a quote
header (an "On ... wrote:" line in any of the supported languages, an Outlook ``From:/Sent:``
block, ``-----Original Message-----``, an underscore separator), the start of forwarded content,
or plain text. Then:

* forwarded content ("---------- Forwarded message ---------", "Begin forwarded message:") that
  comes before any quote header is kept verbatim: it is what the sender chose to send us;
* top posting: everything from the first quote header on is dropped, unless the quote is followed
  by the sender's own answers between ``>`` blocks (inline replies), which are kept;
* bottom posting: a quote header at the top and its ``>`` block are dropped, the text after it kept;
* ``>`` quoted lines without a header are dropped;
* finally the signature is removed: a ``-- `` delimiter, a mobile footer ("Sent from my iPhone",
  "Envoyé de mon iPhone", "Get Outlook for iOS", ...), a closing ("Regards,", "Mit freundlichen
  Grüßen", ...) followed only by a few short lines, or a trailing ``-Name`` line.

Signature policy: every mobile footer is removed, wherever the suites disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["extract_reply"]

_WS = r"[ \t\u00a0\u202f]"

# Verbs of "On <date>, <name> wrote:" headers, by language.
_WROTE = (
    r"wrote|writes|escribió|escribio|escreveu|a\s+écrit|a\s+ecrit|écrit|schrieb|"
    r"ha\s+scritto|scrisse|schreef|het\s+volgende\s+geschreven|geschreven|"
    r"napisał(?:\(a\)|a)?|napisala|napisal|написал(?:\(а\)|а)?|пишет|skrev|skriver|"
    r"kirjoitti|đã\s+viết|skrifaði|írta|napsal(?:\(a\))?"
)
# Words that open such a header, by language ("On", "Le", "El", "Am", "Em", "Il giorno", ...).
_OPENER = (
    r"on|le|el|am|em|il(?:\s+giorno)?|in\s+data|op|w\s+dniu|den|dne|på|vào|no|"
    r"the|el\s+día"
)
# A date-like start: an optional short word (weekday, "Den") then a digit.
_DATE_START = r"(?:[^\W\d_]{1,12}\.?,?\s+){0,2}\d"

# The verb closes the header: "On <date>, <name> wrote:".
_HEADER_VERB_LAST = re.compile(
    rf"^(?:(?:{_OPENER})\b|{_DATE_START}).*\b(?:{_WROTE})\s*:$", re.IGNORECASE | re.DOTALL
)
# The verb sits inside: "Am <date> schrieb <name>:", "<date> skrev <name> <addr>:".
_HEADER_VERB_INSIDE = re.compile(
    rf"^(?:(?:{_OPENER})\b|{_DATE_START}).*\b(?:{_WROTE})\b.*:$",
    re.IGNORECASE | re.DOTALL,
)
_HEADER_WEAK = re.compile(rf"^.*\b(?:{_WROTE})\s*:$", re.IGNORECASE | re.DOTALL)
# Gmail in some languages (Russian, Japanese, ...) writes no verb: "<date>, <name> <addr>:".
_HEADER_NO_VERB = re.compile(
    rf"^(?:{_DATE_START}).*\d{{1,2}}[:.]\d{{2}}.*<[^<>\s]+@[^<>\s]+>\)?:$", re.DOTALL
)
_TIME = re.compile(r"\d{1,2}[:.]\d{2}")
_EMAIL = re.compile(r"[^\s<>()\"']+@[^\s<>()\"']+")

_ORIGINAL_MESSAGE = re.compile(
    r"^\s*[-=_*]{2,}\s*(?:original\s+message|original\s+e-?mail|ursprüngliche\s+nachricht|"
    r"originalnachricht|message\s+d'origine|message\s+original|mensaje\s+original|"
    r"mensagem\s+original|messaggio\s+originale|oorspronkelijk\s+bericht|"
    r"origineel\s+bericht|wiadomość\s+oryginalna|oryginalna\s+wiadomość|"
    r"исходное\s+сообщение|ursprungligt\s+meddelande|originalmeddelande|"
    r"opprinnelig\s+melding|oprindelig\s+(?:besked|meddelelse)|alkuperäinen\s+viesti|"
    r"původní\s+zpráva|reply\s+message)\s*[-=_*]{2,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{20,}\s*$")
_RULE = re.compile(r"^\s*(?:[-_=*]\s*){3,}$")
_FORWARD = re.compile(
    r"^\s*(?:[-=_*]{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht|"
    r"message\s+transféré|mensaje\s+reenviado|mensaje\s+reenviado|mensagem\s+encaminhada|"
    r"messaggio\s+inoltrato|doorgestuurd\s+bericht|wiadomość\s+przekazana|"
    r"przekazana\s+wiadomość|пересылаемое\s+сообщение|пересланное\s+сообщение|"
    r"vidarebefordrat\s+meddelande|videresendt\s+(?:melding|besked|meddelelse)|"
    r"välitetty\s+viesti)\s*[-=_*]{2,}"
    r"|begin\s+forwarded\s+message:|anfang\s+der\s+weitergeleiteten\s+nachricht:|"
    r"début\s+du\s+message\s+réexpédié\s*:|inicio\s+del\s+mensaje\s+reenviado:|"
    r"início\s+da\s+mensagem\s+reencaminhada:|inizio\s+messaggio\s+inoltrato:|"
    r"begin\s+doorgestuurd\s+bericht:|начало\s+переадресованного\s+сообщения:|"
    r"vidarebefordrat\s+mejl:|videresendt\s+melding:|start\s+på\s+videresendt\s+besked:|"
    r"välitetty\s+viesti\s+alkaa:)\s*$",
    re.IGNORECASE,
)

# Outlook-style header blocks: "From:" then "Sent:", "To:", "Subject:"... in many languages.
_FROM_KEYS = (
    r"from|von|de|da|van|od|от|från|fra|lähettäjä|mittente|remitente|expéditeur|afzender|"
    r"avsändare|feladó|odesílatel|từ"
)
_OTHER_KEYS = (
    r"sent|date|to|subject|cc|bcc|reply-to|sendt|dato|til|emne|gesendet|datum|an|betreff|"
    r"envoyé|envoye|à|a|objet|enviado(?:\s+el)?|enviada(?:\s+em)?|fecha|para|asunto|data|"
    r"assunto|inviato(?:\s+il)?|oggetto|verzonden|verstuurd|aan|onderwerp|wysłano|wysłane|do|"
    r"temat|отправлено|дата|кому|тема|копия|skickat|till|ämne|kopia|lähetetty|päivämäärä|"
    r"vastaanottaja|aihe|kopio|gửi|ngày|tới|chủ\s+đề|elküldve|címzett|tárgy|komu|předmět|"
    r"odesláno"
)
_HEADER_FIELD = rf"^\s*\*?\s*(?:{{keys}}){_WS}*:\*?(?:{_WS}|$)"
_FROM_LINE = re.compile(_HEADER_FIELD.format(keys=_FROM_KEYS), re.IGNORECASE)
_OTHER_LINE = re.compile(_HEADER_FIELD.format(keys=_OTHER_KEYS), re.IGNORECASE)

_QUOTE = re.compile(r"^\s*>(?!\s*:\s*$)")

# Mobile and mail-app footers.
_DEVICE = (
    r"iphone|ipad|ipod|android|blackberry|outlook|mobile|mobil|móvil|movil|celular|"
    r"smartphone|phone|telefon|телефон|galaxy|samsung|huawei|xiaomi|pixel|nokia|"
    r"windows|tablet|yahoo|gmail|aol|typeapp|sparrow|proton|spark|bluemail|airmail|"
    r"mail\s+app|mail\s+for|newton|superhuman|edison|nine|handy|dispositivo|appareil|"
    r"устройств|laite|enhet|enhed|apparaat|urządzeni"
)
_SENT_FROM_MY = re.compile(
    r"^\s*(?:sent\s+from\s+my|envoyé\s+(?:de|depuis)\s+mon|enviado\s+(?:desde|de)\s+mi|"
    r"enviado\s+do\s+meu|enviado\s+de\s+meu|gesendet\s+von\s+meinem|inviato\s+dal\s+mio|"
    r"verzonden\s+(?:vanaf|met)\s+mijn|verstuurd\s+(?:vanaf|met)\s+mijn|"
    r"wysłane\s+z\s+mojego|wysłano\s+z\s+mojego|отправлено\s+с\s+моего|"
    r"skickat\s+från\s+min|sendt\s+fra\s+min|lähetetty\s+minun)\s+[^,;:!?]{1,60}$",
    re.IGNORECASE,
)
_SENT_FROM_APP = re.compile(
    r"^\s*(?:sent\s+(?:from|with|via|using|on)|envoyé\s+(?:de|depuis|à\s+partir\s+de|avec)|"
    r"enviado\s+(?:desde|de|do|con|com)|gesendet\s+(?:von|mit|vom)|inviato\s+(?:da|dal|con)|"
    r"verzonden\s+(?:vanaf|met|via)|verstuurd\s+(?:vanaf|met|via)|wysłane\s+z|wysłano\s+z|"
    r"отправлено\s+(?:с|из)|skickat\s+(?:från|med)|sendt\s+(?:fra|med)|lähetetty|"
    r"get|obtenir|télécharger|holen\s+sie\s+sich|obtener|descargar|obter|baixe|scarica|"
    r"download|hent|skaffa|pobierz|загрузите|hanki)\s+[^,;:!?]{1,60}$",
    re.IGNORECASE,
)
_DEVICE_RE = re.compile(_DEVICE, re.IGNORECASE)
_VON_MEINEM = re.compile(r"^\s*von\s+meinem\s+[^,;:!?]{1,40}\s+gesendet\.?\s*$", re.IGNORECASE)
# "Get Outlook for iOS", "Outlook für iOS beziehen", "Obtenir Outlook pour Android", ...
_OUTLOOK_MOBILE = re.compile(r"^(?:\S+\s+){0,3}outlook\s+\S+\s+(?:ios|android)\b.{0,30}$",
                             re.IGNORECASE)
# "Sent via the Samsung Galaxy S22 Ultra 5G, an AT&T 5G smartphone"
_CARRIER_FOOTER = re.compile(
    r"^\s*sent\s+(?:via|from)\s+(?:the\s+|my\s+)?[\w\s.+-]{1,40},\s+an?\s+[\w&\s.+-]{1,30}"
    r"(?:smartphone|phone|device|tablet)\.?\s*$",
    re.IGNORECASE,
)
_TRAILING_LINK = re.compile(r"\s*(?:<[^<>\s]*>|\(\s*https?://[^()\s]*\s*\)|https?://\S+)\s*$")
_SIG_DELIMITER = re.compile(r"^(?:--|-- |--\s*|—— ?)$")
_DASH_NAME = re.compile(r"^[-–][^\W\d_][\w.'’-]*(?:\s[\w.'’-]+){0,3}\s*$")

_CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|warmest|many|with\s+kind|with\s+best)\s+regards|regards|"
    r"best(?:\s+wishes)?|all\s+the\s+best|cheers|thanks|thank\s+you|many\s+thanks|"
    r"thanks\s+again|thanks\s+in\s+advance|sincerely|yours\s+(?:truly|sincerely)|"
    r"sincerely\s+yours|respectfully|cordially|take\s+care|"
    r"mit\s+freundlichen\s+grüßen|mit\s+freundlichen\s+grüssen|freundliche\s+grüße|"
    r"viele\s+grüße|beste\s+grüße|liebe\s+grüße|lg|mfg|vg|gruß|grüße|"
    r"cordialement|bien\s+cordialement|bien\s+à\s+vous|salutations|amitiés|merci|"
    r"saludos(?:\s+cordiales)?|un\s+saludo|atentamente|gracias|"
    r"cumprimentos|atenciosamente|abraços|obrigad[oa]|"
    r"cordiali\s+saluti|distinti\s+saluti|saluti|grazie|"
    r"met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|groeten|mvg|"
    r"pozdrawiam|z\s+poważaniem|dziękuję|"
    r"с\s+уважением|спасибо|"
    r"med\s+vänliga\s+hälsningar|vänliga\s+hälsningar|hälsningar|mvh|"
    r"med\s+vennlig\s+hilsen|vennlig\s+hilsen|med\s+venlig\s+hilsen|venlig\s+hilsen|"
    r"hilsen|ystävällisin\s+terveisin|terveisin|kiitos)\s*[,.!]?\s*$",
    re.IGNORECASE,
)
_POSTSCRIPT = re.compile(r"^\s*p\.?\s?s\b", re.IGNORECASE)
_MAX_CLOSING_TAIL = 6  # lines after a closing that can still be a name/title/phone block
_MAX_CLOSING_LINE = 72
_WRAPPED_QUOTE = 60  # a quoted line this long may have been re-wrapped by the client


@dataclass(frozen=True)
class _Splitter:
    start: int
    end: int  # last line of the header, inclusive
    quoted_below: bool  # the header is followed by ">" lines


def extract_reply(text: str) -> str:
    """Return only what the sender newly wrote in ``text`` (a decoded plain-text body)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _join(_extract(lines))


def _extract(lines: list[str]) -> list[str]:
    forward = next((i for i, line in enumerate(lines) if _FORWARD.match(line)), None)
    split = _find_splitter(lines, stop=forward)
    if forward is not None and split is None:
        # The sender forwarded something to us: their note, then the forwarded content verbatim.
        head = _strip_signature(_drop_quotes(lines[:forward]))
        return [*head, "", *lines[forward:]] if _has_text(head) else lines[forward:]
    if split is None:
        return _strip_signature(_drop_quotes(lines))
    head = lines[: split.start]
    tail = lines[split.end + 1 :]
    if _has_text(_strip_signature(_drop_quotes(head))):
        answers = _inline_answers(tail) if split.quoted_below else []
        kept = _drop_quotes(head)
        if answers:
            kept = [*_trim(kept), "", *answers]
        return _strip_signature(kept)
    # Nothing above the header: bottom posting, or a forward without a note.
    if split.quoted_below:
        rest = _skip_quote_block(tail)
        return _extract(rest) if rest else []
    return _strip_signature(_drop_quotes(lines))


def _find_splitter(lines: list[str], *, stop: int | None) -> _Splitter | None:
    limit = len(lines) if stop is None else stop
    for i in range(limit):
        start = _splitter_start(lines, i)
        if start is not None:
            begin, end = start
            return _Splitter(begin, end, _quoted_below(lines, end))
    return None


def _splitter_start(lines: list[str], i: int) -> tuple[int, int] | None:
    line = lines[i]
    if _QUOTE.match(line):
        return None
    stripped = line.strip()
    if not stripped:
        return None
    if _ORIGINAL_MESSAGE.match(line) or _UNDERSCORES.match(line):
        return i, i
    if _FROM_LINE.match(line) or _OTHER_LINE.match(line):
        block = _header_block(lines, i)
        if block is not None:
            return _include_rule_above(lines, block[0]), block[1]
    header = _wrote_header(lines, i)
    if header is not None:
        return header, i
    return None


def _header_block(lines: list[str], i: int) -> tuple[int, int] | None:
    """An Outlook-style block starting at line ``i``: a From field and two other fields."""
    if i > 0 and lines[i - 1].strip() and _OTHER_LINE.match(lines[i - 1]):
        return None  # not the first line of the block
    has_from = False
    others: set[str] = set()
    last = i
    for j in range(i, min(len(lines), i + 8)):
        line = lines[j]
        if not line.strip():
            if j > i and (has_from and len(others) >= 2):
                break
            continue
        if _QUOTE.match(line):
            break
        if _FROM_LINE.match(line):
            has_from = True
            last = j
        elif _OTHER_LINE.match(line):
            others.add(line.split(":", 1)[0].strip(" *\t").casefold())
            last = j
    if has_from and len(others) >= 2:
        return i, last
    return None


def _include_rule_above(lines: list[str], start: int) -> int:
    j = start - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and _RULE.match(lines[j]) and not _SIG_DELIMITER.match(lines[j].strip()):
        return j
    return start


def _wrote_header(lines: list[str], i: int) -> int | None:
    """The first line of an "On <date>, <name> wrote:" header ending at line ``i``, if any."""
    line = lines[i].rstrip()
    if not (line.endswith(":") or re.search(r"\S\s*-{2,}$", line)):
        return None
    weak: int | None = None
    for size in range(1, 5):
        first = i - size + 1
        if first < 0:
            break
        chunk = lines[first : i + 1]
        if any(not part.strip() for part in chunk):
            break
        if first != i and _QUOTE.match(lines[first]):
            break
        joined = _normalise_header(" ".join(part.strip() for part in chunk))
        if len(joined) > 400:
            break
        # Prose ("On March 5 the mayor wrote:") has neither a time nor an address.
        evidence = "@" in joined or _TIME.search(joined) or _quoted_below(lines, i)
        if evidence and (_HEADER_VERB_LAST.match(joined) or _HEADER_VERB_INSIDE.match(joined)):
            return first
        if _HEADER_NO_VERB.match(joined):
            return first
        if weak is None and _HEADER_WEAK.match(joined) and evidence:
            weak = first
    return weak


def _normalise_header(joined: str) -> str:
    joined = re.sub(r"\s+", " ", joined).strip()
    # Zoho: "---- On Wed, 24 Feb 2021 14:02:50 +0530 john@gmail.com wrote ----"
    dashed = re.match(r"^-{2,}\s*(.*?)\s*-{2,}$", joined)
    if dashed:
        joined = dashed.group(1) + ":"
    return joined


def _quoted_below(lines: list[str], end: int) -> bool:
    for line in lines[end + 1 :]:
        if line.strip():
            return bool(_QUOTE.match(line))
    return False


def _quote_flags(lines: list[str]) -> list[bool]:
    """Which lines are quoted, counting a long quoted line's wrapped-over continuation.

    Mail clients re-wrap long quoted lines and the piece that wraps loses its ``>``:
    ``> ... ornare diam,`` / ``eget accumsan est.`` / ``>``. A single unquoted line sandwiched
    between a long quoted line and another quoted line is such a continuation.
    """
    flags = [bool(_QUOTE.match(line)) for line in lines]
    for i in range(1, len(lines) - 1):
        if flags[i] or not lines[i].strip() or not (flags[i - 1] and flags[i + 1]):
            continue
        above = lines[i - 1].lstrip(" >").rstrip()
        if len(above) >= _WRAPPED_QUOTE and (
            lines[i].lstrip()[:1].islower() or not above.endswith((".", "!", "?", ":"))
        ):
            flags[i] = True
    return flags


def _skip_quote_block(lines: list[str]) -> list[str]:
    flags = _quote_flags(lines)
    j = 0
    while j < len(lines) and (not lines[j].strip() or flags[j]):
        j += 1
    return lines[j:]


def _inline_answers(tail: list[str]) -> list[str]:
    """Text the sender wrote between ``>`` blocks below a quote header (an inline reply)."""
    kept: list[str] = []
    seen_quote = False
    for line, quoted in zip(tail, _quote_flags(tail), strict=True):
        if quoted:
            seen_quote = True
            if kept and kept[-1].strip():
                kept.append("")
            continue
        if seen_quote:
            kept.append(line)
    answers = _trim(_squeeze_blank_lines(_strip_signature(kept)))
    if not _has_text(answers):
        return []
    if _find_splitter(answers, stop=None) is not None:
        return []  # what follows is older history, not answers
    return answers


def _squeeze_blank_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return out


def _drop_quotes(lines: list[str]) -> list[str]:
    flags = _quote_flags(lines)
    if not any(flags):
        return lines
    if all(quoted or not line.strip() for line, quoted in zip(lines, flags, strict=True)):
        return []
    kept: list[str] = []
    for line, quoted in zip(lines, flags, strict=True):
        if quoted:
            if kept and kept[-1].strip():
                kept.append("")
            continue
        kept.append(line)
    return kept


def _is_mobile_footer(line: str) -> bool:
    bare = _TRAILING_LINK.sub("", line).strip()
    if _CARRIER_FOOTER.match(bare):
        return True
    if not bare or len(bare.split()) > 9:
        return False
    if _SENT_FROM_MY.match(bare) or _VON_MEINEM.match(bare) or _OUTLOOK_MOBILE.match(bare):
        return True
    return bool(_SENT_FROM_APP.match(bare) and _DEVICE_RE.search(bare))


def _strip_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _SIG_DELIMITER.match(line.rstrip("\n")) or _is_mobile_footer(line):
            lines = lines[:i]
            break
    body = _trim(lines)
    if not body:
        return body
    closing = _closing_start(body)
    if closing is not None and _has_text(body[:closing]):
        body = _trim(body[:closing])
    if body and _DASH_NAME.match(body[-1]) and len(body) > 1 and not body[-2].strip():
        body = _trim(body[:-1])
    return body


def _closing_start(body: list[str]) -> int | None:
    """Where a closing ("Regards,") followed only by a short name/title block starts."""
    tail_start = max(0, len(body) - _MAX_CLOSING_TAIL - 1)
    for i in range(tail_start, len(body)):
        if not _CLOSING.match(body[i]):
            continue
        after = [line for line in body[i + 1 :] if line.strip()]
        if len(after) <= _MAX_CLOSING_TAIL and all(
            len(line.strip()) <= _MAX_CLOSING_LINE
            and not line.rstrip().endswith("?")
            and not _POSTSCRIPT.match(line)
            for line in after
        ):
            return i
    return None


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _join(lines: list[str]) -> str:
    return "\n".join(_trim(lines))
