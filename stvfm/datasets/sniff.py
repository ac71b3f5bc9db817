"""Is a downloaded body the format it should be? Checked before a file is pinned in ``data/sources.lock.json`` or kept
in the download cache, so an HTML error page, a truncated transfer or an empty file is never trusted.

:func:`problem` returns ``None`` for a plausible file, else a short phrase saying what the body is. The checks read the
file once, in blocks, without building it in memory:

``.json`` (UniST)  one JSON object: its first non-blank byte is ``{``, brackets balance outside strings and close
                   exactly at the end (a truncated file never does), only JSON bytes appear outside strings, and the
                   keys ``X_train``, ``X_val``, ``X_test`` are present.
``.zip``           a zip archive whose central directory reads (``zipfile``): a truncated archive has none.
``.parquet``       ``PAR1`` at both ends.
``.csv``           not empty, not HTML.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

BLOCK = 1 << 22
UNIST_KEYS = (b'"X_train"', b'"X_val"', b'"X_test"')
_HTML = (b"<!doctype", b"<html", b"<head", b"<?xml", b"<body", b"<title", b"<!--")
# per byte value: allowed outside strings in JSON (whitespace, structure, numbers, true/false/null, NaN/Infinity as
# Python's json writes them), bracket depth change, whitespace
_JSON_OK = np.zeros(256, dtype=bool)
_JSON_OK[np.frombuffer(b" \t\r\n{}[],:0123456789.+-eEtruefalsnNaIiy", np.uint8)] = True
_DELTA = np.zeros(256, dtype=np.int8)
_DELTA[np.frombuffer(b"[{", np.uint8)] = 1
_DELTA[np.frombuffer(b"]}", np.uint8)] = -1
_BLANK = np.zeros(256, dtype=bool)
_BLANK[np.frombuffer(b" \t\r\n", np.uint8)] = True


def _head(path: Path, n: int = 512) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _looks_html(head: bytes) -> str | None:
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if h.startswith(_HTML):
        first = h.split(b"\n", 1)[0][:40].decode("utf-8", "replace")
        return f"an HTML page (starts {first!r}), e.g. a login, quota or error page served instead of the file"
    return None


def problem(path: str | Path, filename: str | None = None) -> str | None:
    """What is wrong with the body at ``path`` for a file named ``filename`` (default: its own name); None if fine."""
    path = Path(path)
    name = (filename or path.name).lower()
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes)"
    head = _head(path)
    html = _looks_html(head)
    if html:
        return html
    if name.endswith(".json"):
        return _json_problem(path, size)
    if name.endswith(".zip"):
        if not zipfile.is_zipfile(path):
            return f"not a zip archive ({size} bytes, no zip directory: truncated or another format)"
        try:
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            return f"a damaged zip archive ({e})"
        return None
    if name.endswith((".parquet", ".pq")):
        with open(path, "rb") as f:
            start = f.read(4)
            f.seek(max(0, size - 4))
            end = f.read(4)
        if start != b"PAR1" or end != b"PAR1":
            return (
                f"not a Parquet file ({size} bytes; Parquet starts and ends with 'PAR1'): truncated or another format"
            )
    return None


def _json_problem(path: Path, size: int) -> str | None:
    """A streaming structural check of one JSON object (see the module doc)."""
    depth = 0
    in_string = started = closed = False
    last = 0
    found = dict.fromkeys(UNIST_KEYS, False)
    tail = b""
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            if b"\\" in block:  # escapes in strings: let the real parser judge (UniST files have none)
                return _json_full(path)
            for k, seen in found.items():
                found[k] = seen or k in block or k in tail + block[:16]
            tail = block[-16:]
            b = np.frombuffer(block, dtype=np.uint8)
            quote = b == 34  # '"'
            parity = np.cumsum(quote, dtype=np.int32)
            if in_string:
                parity += 1
            outside = ((parity & 1) == 0) & ~quote  # a quote and what lies between two quotes are inside a string
            in_string = bool(parity[-1] & 1)
            bad = outside & ~_JSON_OK[b]
            if bad.any():
                i = int(np.argmax(bad))
                return f"not a JSON file: byte {bytes([int(b[i])])!r} at offset {i + offset} is not JSON"
            content = (outside & ~_BLANK[b]) | quote
            if content.any():
                if closed:
                    return "not one JSON object (more data after the object closes)"
                if not started:
                    started = True
                    first = int(b[int(np.argmax(content))])
                    if first != ord("{"):
                        return f"not a JSON object (it starts with {bytes([first])!r}; UniST files start with '{{')"
                last = int(b[len(b) - 1 - int(np.argmax(content[::-1]))])
            running = depth + np.cumsum(_DELTA[b] * outside, dtype=np.int64)
            if running.min() < 0:
                return "not one JSON object (a bracket closes that was never opened)"
            shut = np.flatnonzero((running == 0) & outside & (_DELTA[b] < 0))
            if shut.size:
                if content[shut[0] + 1 :].any():
                    return "not one JSON object (more data after the object closes)"
                closed = True
            depth = int(running[-1])
            offset += len(block)
    if in_string or depth != 0 or last != ord("}"):
        return (
            f"a truncated JSON file ({size} bytes; {depth} bracket(s) still open at the end): the transfer was "
            "cut short"
        )
    missing = [k.decode().strip('"') for k, ok in found.items() if not ok]
    if missing:
        return f"JSON, but not a UniST file: no key {', '.join(missing)} (UniST files hold X_train, X_val, X_test)"
    return None


def _json_full(path: Path) -> str | None:
    import json

    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        return f"not valid JSON ({str(e)[:120]})"
    if not isinstance(data, dict):
        return "not a JSON object"
    missing = [k for k in ("X_train", "X_val", "X_test") if k not in data]
    if missing:
        return f"JSON, but not a UniST file: no key {', '.join(missing)} (UniST files hold X_train, X_val, X_test)"
    return None
