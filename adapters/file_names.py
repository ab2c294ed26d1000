"""File names as the file system gives them, which need not be UTF-8 (GBK names from Chinese Windows tools and old
zip extractors, Shift-JIS, stray bytes): kept losslessly, shown readably.

Python hands such a name over with each byte that is not UTF-8 as a lone surrogate (U+DC80–U+DCFF,
``surrogateescape``), which neither a database nor JSON can carry. Three forms:
- the *file-system* form: what ``os`` functions take (lone surrogates and all) and give back;
- the *stored* form, the key a source's file is kept under: the same text with each such byte written as
  U+FDD0 and two hex digits (U+FDD0 is a Unicode noncharacter, reserved for a program's own use; a real U+FDD0 is
  written twice). Valid Unicode, one-to-one with the bytes, and a UTF-8 name is its own stored form;
- the *readable* form people see and search: each path part decoded as UTF-8, else as GB18030 where those bytes
  decode cleanly, else as UTF-8 with a visible U+FFFD per bad byte.
"""

from __future__ import annotations

import os
import re
import zipfile

ESCAPE = "\ufdd0"
_STORED_BYTE = re.compile(f"{ESCAPE}({ESCAPE}|[0-9A-F]{{2}})")
_UTF8_FLAG = 0x800  # a zip member's name is UTF-8 (general purpose bit 11)


def stored(name: str) -> str:
    """The stored form of a file-system name (a name without odd bytes comes back as it is)."""
    if ESCAPE not in name and not _has_surrogates(name):
        return name
    out = []
    for char in name:
        if char == ESCAPE:
            out.append(ESCAPE * 2)
        elif "\udc80" <= char <= "\udcff":
            out.append(f"{ESCAPE}{ord(char) - 0xDC00:02X}")
        else:
            out.append(char)
    return "".join(out)


def file_system(name: str) -> str:
    """The file-system form of a stored name: opens the very file it was found as."""
    if ESCAPE not in name:
        return name
    return _STORED_BYTE.sub(lambda m: ESCAPE if m.group(1) == ESCAPE else chr(0xDC00 + int(m.group(1), 16)), name)


def readable(name: str) -> str:
    """What a person reads for a stored or file-system name (valid Unicode, '/'-separated parts kept)."""
    name = file_system(name)
    if not _has_surrogates(name):
        return name
    return "/".join(_readable_part(os.fsencode(part)) for part in name.split("/"))


def _readable_part(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")


def _has_surrogates(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def zip_member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as its writer meant it: UTF-8 when flagged so (or when its bytes are UTF-8 anyway, as
    some tools write without the flag); otherwise Windows tools wrote the system's code page, which for Chinese
    archives is GBK, so GB18030 where its bytes decode cleanly, else the zip standard's cp437 (zipfile's guess)."""
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    raw = info.filename.encode("cp437")
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def upload_name(name: str) -> str:
    """An upload's file name as its sender meant it. Starlette reads a multipart file name as UTF-8 and falls
    back to Latin-1, so a GBK name arrives as Latin-1 mojibake: its bytes are decoded again as GB18030 where they
    decode cleanly. Lone surrogates never get through."""
    if any("\x80" <= char <= "\xff" for char in name) and all(char <= "\xff" for char in name):
        try:
            return name.encode("latin-1").decode("gb18030")
        except UnicodeDecodeError:
            pass
    return readable(name)


def zip_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """A zip's file members by the names their writer meant, '/'-separated."""
    return {zip_member_name(info).replace("\\", "/"): info for info in archive.infolist() if not info.is_dir()}
