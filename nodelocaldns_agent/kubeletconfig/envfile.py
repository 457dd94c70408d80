"""systemd ``EnvironmentFile=`` files (``/etc/kubernetes/kubelet``, ``kubeadm-flags.env``, ...).

Parsed as systemd's ``parse_env_file`` does: ``NAME=value`` assignments, values unquoted,
``"double"`` (backslash escapes ``"\\`$``) or ``'single'`` quoted, quoted parts glued to
what follows, trailing blanks of unquoted values dropped, ``\\`` + newline continues,
``#``/``;`` comment lines, CR and LF both end a line, a NUL byte ends the file. A leading
``export`` before the name is accepted as well (shell-style files). Assignments whose name
is not a valid variable name are skipped, as systemd drops them.

The cluster DNS is a ``--cluster-dns=V`` or ``--cluster-dns V`` word inside any value
(words split on blanks; ``--cluster_dns`` is the same flag to kubelet); ``V`` is
comma-separated.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.flags import (
    CLUSTER_DNS_FLAG,
    check_addresses,
    find_flag,
    repeated,
    split_addresses,
)

_BLANKS = re.compile(rb"[ \t\n\r]*")
_INLINE_BLANKS = re.compile(rb"[ \t]*")
_TO_EOL = re.compile(rb"[^\n\r]*")
_KEY = re.compile(rb"[^=\n\r]*")
_UNQUOTED_RUN = re.compile(rb"[^\n\r\\]*")
_DOUBLE_RUN = re.compile(rb'[^"\\]*')
_WORD = re.compile(r"[^ \t\n\r]+")
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_EXPORT = re.compile(rb"export[ \t]+")
_NEWLINE = b"\n\r"
_SHELL_NEED_ESCAPE = b'"\\`$'


@dataclass(frozen=True)
class Assignment:
    """One live ``NAME=value`` assignment of an env file."""

    name: str
    #: the value as systemd sees it, decoded as UTF-8 with ``surrogateescape``
    value: str
    #: 1-based line of the name
    line: int
    #: byte span of the value as written, quotes included
    span: tuple[int, int]
    #: the value's bytes
    raw_value: bytes
    #: ``(value offset, file offset, length)`` runs where value bytes are file bytes verbatim
    runs: tuple[tuple[int, int, int], ...]

    @functools.cached_property
    def _run_starts(self) -> list[int]:
        return [run[0] for run in self.runs]

    def file_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The file bytes holding ``raw_value[start:end]`` verbatim, or ``None`` when
        that part of the value crosses a quote or an escape."""
        i = bisect.bisect_right(self._run_starts, start) - 1
        while i >= 0:
            value_off, file_off, length = self.runs[i]
            if value_off <= start and end <= value_off + length:
                return (file_off + start - value_off, file_off + end - value_off)
            if value_off + length < start:
                break
            i -= 1
        return None


@dataclass(frozen=True)
class Occurrence:
    """Where an env file sets the cluster DNS."""

    #: the variable whose value holds ``--cluster-dns``
    name: str
    line: int
    #: byte span of the comma-separated value ``V`` in the file; ``None`` when ``V`` is
    #: written with quotes or escapes inside it and cannot be edited in place
    span: tuple[int, int] | None
    values: tuple[str, ...]


def _end(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    """Where a match of ``pattern`` (which may match empty) at ``pos`` ends."""
    match = pattern.match(data, pos)
    return match.end() if match else pos


class _Value:
    """Accumulates one value and its mapping to file bytes."""

    def __init__(self, start: int) -> None:
        self.data = bytearray()
        self.runs: list[tuple[int, int, int]] = []
        self.start = start
        self.end = start

    def add(self, data: bytes, file_off: int, file_end: int) -> None:
        if data:
            self.runs.append((len(self.data), file_off, len(data)))
            self.data += data
        self.end = file_end

    def truncate(self, size: int) -> None:
        """Drop value bytes from ``size`` on (trailing blanks of an unquoted value)."""
        del self.data[size:]
        kept = []
        for value_off, file_off, length in self.runs:
            if value_off < size:
                kept.append((value_off, file_off, min(length, size - value_off)))
        self.runs = kept


def _parse_value(data: bytes, pos: int) -> tuple[_Value, int]:
    """Parse the value starting right after ``=``; return it and the position after it."""
    n = len(data)
    pos = _end(_INLINE_BLANKS, data, pos)
    value = _Value(pos)
    while pos < n:  # PRE_VALUE: between quoted parts
        c = data[pos]
        if c in _NEWLINE:
            return value, pos
        if c in b" \t":
            pos += 1
        elif c == ord("'"):
            close = data.find(b"'", pos + 1)
            close = n if close < 0 else close
            value.add(data[pos + 1 : close], pos + 1, min(close + 1, n))
            pos = close + 1
        elif c == ord('"'):
            pos = _parse_double(data, pos + 1, value)
        else:
            return value, _parse_unquoted(data, pos, value)
    return value, n


def _parse_double(data: bytes, pos: int, value: _Value) -> int:
    """Parse a double-quoted part from after its opening quote; return the end."""
    n = len(data)
    while pos < n:
        run_end = _end(_DOUBLE_RUN, data, pos)
        value.add(data[pos:run_end], pos, run_end)
        pos = run_end
        if pos >= n:
            break
        if data[pos] == ord('"'):
            value.end = pos + 1
            return pos + 1
        if pos + 1 >= n:  # a lone backslash at the end of the file
            return n
        c = data[pos + 1 : pos + 2]
        if c in (b"\n",):
            value.end = pos + 2
        elif c in _SHELL_NEED_ESCAPE:
            value.add(c, pos + 1, pos + 2)
        else:
            value.add(data[pos : pos + 2], pos, pos + 2)
        pos += 2
    return n


def _parse_unquoted(data: bytes, pos: int, value: _Value) -> int:
    """Parse an unquoted part up to the end of the line; return the end."""
    n = len(data)
    while True:
        run_end = _end(_UNQUOTED_RUN, data, pos)
        run = data[pos:run_end]
        prev_end = value.end
        value.add(run, pos, run_end)
        if run_end >= n or data[run_end] in _NEWLINE:
            kept = run.rstrip(b" \t")  # trailing blanks go, unless escaped
            if len(kept) < len(run):
                value.truncate(len(value.data) - len(run) + len(kept))
                value.end = pos + len(kept) if kept else prev_end
            return run_end
        pos = run_end
        # a backslash: it escapes the next byte; an escaped newline is dropped
        if pos + 1 >= n:
            return n
        c = data[pos + 1 : pos + 2]
        if c in (b"\n", b"\r"):
            value.end = pos + 2
        else:
            value.add(c, pos + 1, pos + 2)
        pos += 2


class _Lines:
    """1-based line numbers of byte offsets, in O(log n) each."""

    def __init__(self, data: bytes) -> None:
        self._breaks = [m.start() for m in re.finditer(rb"\n", data)]

    def of(self, offset: int) -> int:
        return bisect.bisect_left(self._breaks, offset) + 1


def parse_env(data: bytes, where: str) -> list[Assignment]:
    """The live assignments of ``data`` in file order (a name may repeat; the last wins).

    Never raises: systemd accepts any bytes (``where`` is kept for a uniform signature).
    """
    del where
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    lines = _Lines(data)
    out: list[Assignment] = []
    n = len(data)
    pos = 0
    while pos < n:
        pos = _end(_BLANKS, data, pos)
        if pos >= n:
            break
        if data[pos] in b"#;":
            pos = _end(_TO_EOL, data, pos)
            continue
        key_start = pos
        # the first byte always belongs to the name, even a "=" (as in systemd)
        pos = _end(_KEY, data, pos + 1)
        if pos >= n or data[pos] != ord("="):
            continue  # a line without "=" is ignored
        key = data[key_start:pos].rstrip(b" \t")
        value, pos = _parse_value(data, pos + 1)
        export = _EXPORT.match(key)
        if export:
            key = key[export.end() :]
        if not _NAME.fullmatch(key):
            continue
        raw = bytes(value.data)
        out.append(
            Assignment(
                name=key.decode("ascii"),
                value=raw.decode("utf-8", "surrogateescape"),
                line=lines.of(key_start),
                span=(value.start, value.end),
                raw_value=raw,
                runs=tuple(value.runs),
            )
        )
    return out


def _occurrences(data: bytes, where: str) -> list[Occurrence]:
    found: list[Occurrence] = []
    for assignment in parse_env(data, where):
        if b"--cluster" not in assignment.raw_value:  # cheap pre-check: both spellings
            continue
        # latin-1 maps each byte to one character, so offsets stay byte offsets
        text = assignment.raw_value.decode("latin-1")
        matches = list(_WORD.finditer(text))
        words = [m.group() for m in matches]
        for hit in find_flag(words, CLUSTER_DNS_FLAG):
            if hit.word is None:
                raise ConfigError(
                    f"{where} line {assignment.line}: {CLUSTER_DNS_FLAG} in {assignment.name} "
                    "has no value; expected --cluster-dns=<ip>[,<ip>...]"
                )
            start = matches[hit.word].start() + hit.start
            end = matches[hit.word].end()
            raw = assignment.raw_value[start:end]
            found.append(
                Occurrence(
                    name=assignment.name,
                    line=assignment.line,
                    span=assignment.file_span(start, end),
                    values=split_addresses(raw.decode("utf-8", "surrogateescape")),
                )
            )
    return found


def find_cluster_dns(data: bytes, where: str) -> Occurrence | None:
    """The one ``--cluster-dns`` of ``data``, or ``None`` when there is none.

    Raises :class:`ConfigError` when it appears more than once or has no value.
    """
    found = _occurrences(data, where)
    if len(found) > 1:
        raise repeated(where, CLUSTER_DNS_FLAG, [o.line for o in found])
    return found[0] if found else None


class EnvFormat:
    """The ``env`` format: a systemd EnvironmentFile."""

    name = "env"

    def read(self, data: bytes, where: str) -> tuple[str, ...]:
        """The addresses of the file's one ``--cluster-dns``; ``()`` when it has none."""
        occurrence = find_cluster_dns(data, where)
        return occurrence.values if occurrence else ()

    def edit(self, data: bytes, new: Sequence[str], where: str) -> bytes:
        """``data`` with the ``--cluster-dns`` value replaced by ``new``, comma-joined."""
        values = check_addresses(new, where)
        occurrence = find_cluster_dns(data, where)
        if occurrence is None:
            raise ConfigError(
                f"{where}: no {CLUSTER_DNS_FLAG} to edit; expected a variable holding "
                f"{CLUSTER_DNS_FLAG}=<ip>"
            )
        if occurrence.span is None:
            raise ConfigError(
                f"{where} line {occurrence.line}: the {CLUSTER_DNS_FLAG} value in "
                f"{occurrence.name} contains quotes or escapes; expected plain addresses"
            )
        start, end = occurrence.span
        return data[:start] + ",".join(values).encode("ascii") + data[end:]


FORMAT = EnvFormat()
