"""Text decoding repair shared by training and inference: mojibake undone with ftfy, line by line."""

from __future__ import annotations

import re
from collections.abc import Iterator

import ftfy


def _cp1252_char(byte: int) -> str:
    """The cp1252 character for a byte; its 5 undefined bytes fall back to latin-1."""
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)


# cp1252 has no character for byte 0x9D, so the mojibake of a closing quote (U+201D,
# UTF-8 E2 80 9D) often loses its last byte and becomes a bare "â€". ftfy then misreads
# a following space as NBSP and yields "†" glued to the next word (as in
# seed-article-nato.txt: 'lainnya,†kata'). Both shapes are restored to a closing quote.
_CP1252_CONTINUATIONS = "".join(sorted({_cp1252_char(b) for b in range(0x80, 0xC0)} | {
    chr(b) for b in range(0x80, 0xC0)}))
_LOST_RDQUO_RE = re.compile("\u00e2\u20ac(?![" + re.escape(_CP1252_CONTINUATIONS) + "])")
_GLUED_DAGGER_RE = re.compile(r"(?<=\S)\u2020(?=\w)")
# ftfy steps that mean mojibake was undone (not mere normalization such as curly quotes).
_MOJIBAKE_ACTIONS = {"encode", "decode", "transcode"}
_MOJIBAKE_FIXERS = {"decode_inconsistent_utf8", "fix_c1_controls", "replace_lossy_sequences",
                    "restore_byte_a0"}


def repair_text(text: str) -> tuple[str, list[str]]:
    """Repair mojibake and normalize text with ftfy; return ``(text, warnings)``.

    Applies ``ftfy.fix_text``'s defaults (so curly quotes become straight ones, NFC,
    control characters removed) line by line, like ``fix_text`` does, but keeps ftfy's
    explanations to warn "repaired mojibake" only when an encoding error was undone.
    Training should read its text through this same function.
    """
    repaired = _GLUED_DAGGER_RE.sub("\u201d ", _LOST_RDQUO_RE.sub("\u201d", text))
    mojibake = repaired != text
    config = ftfy.TextFixerConfig()
    out = []
    for segment in _segments(repaired, config.max_decode_length):
        if config.unescape_html == "auto" and "<" in segment:
            config = config._replace(unescape_html=False)  # same rule as ftfy.fix_text
        fixed, steps = ftfy.fix_and_explain(segment, config)
        mojibake = mojibake or any(
            action in _MOJIBAKE_ACTIONS or param in _MOJIBAKE_FIXERS for action, param in steps or ()
        )
        out.append(fixed)
    return "".join(out), (["repaired mojibake"] if mojibake else [])


def _segments(text: str, max_length: int) -> Iterator[str]:
    """Split text after each newline, and every ``max_length`` characters, as ftfy does."""
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        end = min(end, pos + max_length)
        yield text[pos:end]
        pos = end
