"""Data sets of a resource, as CSV: generate them, read them back line by line, fetch them.

A data set is CSV whose columns are the resource's fields in its JSON order (the automatic
``id`` first where it has one) — for the seed's heroes ``id,name,hero,power,xp,color``, its
``mp6data.csv`` — with or without that header line (the seed's grader loads a headerless
file). Each cell is read by its field's rules (``resources.fields``).
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from twotier.resources import Resource
from twotier.resources.fields import IntegerField, StringField

#: Whole numbers in generated data are drawn from this many values (the seed's xp: 0…9,999).
SPAN_DEFAULT = 10_000


@dataclass(frozen=True)
class KeyNumbering:
    """How generated rows' keys follow their numbers (1, 2, …): an automatic or integer key
    is the number (moved into its range), a text key ``her-0000001`` (its tail, if the key
    is shorter). The bench writes the same keys in Lua: ``string.format(form, n + offset)``,
    then its last ``cut`` characters."""

    form: str
    offset: int = 0
    cut: int | None = None

    def key(self, number: int) -> Any:
        if self.form == "%d":
            return number + self.offset
        text = self.form % (number + self.offset)
        return text[-self.cut :] if self.cut else text


def numbering(resource: Resource) -> KeyNumbering:
    """How generated rows' keys are numbered: a composite key's first field (the others
    drawn as any field's, the first making each row's key its own)."""
    key = resource.field(resource.key_fields[0])
    if isinstance(key, IntegerField):
        low, _high = key.bounds
        return KeyNumbering("%d", max(low, 1) - 1)
    assert isinstance(key, StringField)
    return KeyNumbering(f"{resource.singular[:3]}-%07d", cut=key.max_length)


def generate(
    resource: Resource, rows: int, seed: int = 0, span: int = SPAN_DEFAULT, start: int = 1
) -> Iterator[dict[str, Any]]:
    """``rows`` new rows (without an automatic id), the same for the same ``seed``. A
    client-given key is numbered from ``start`` (see ``numbering``), so the rows' keys
    differ."""
    rng = random.Random(seed)
    keys = numbering(resource)
    for number in range(start, start + rows):
        row: dict[str, Any] = {}
        for spec in resource.fields:
            if spec.name == resource.key_fields[0]:
                row[spec.name] = keys.key(number)
            elif spec.nullable and rng.random() < 0.1:
                row[spec.name] = None
            else:
                row[spec.name] = spec.sample(rng, span)
        yield row


def write_csv(
    out: TextIO, resource: Resource, rows: int, seed: int = 0, span: int = SPAN_DEFAULT
) -> None:
    """Write a data set with a header line (an automatic id numbered 1…rows)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(resource.columns)
    fields = [resource.field(name) for name in resource.columns]
    for number, row in enumerate(generate(resource, rows, seed, span), start=1):
        values = {resource.key: number, **row} if resource.auto_key else row
        writer.writerow([spec.to_text(values[spec.name]) for spec in fields])


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class CsvReader:
    """Reads a data set line by line, yielding each valid row (its values in the resource's
    column order, and its line as read) and recording bad ones."""

    source: TextIO
    resource: Resource
    on_progress: Callable[[int], None] | None = None
    bad: list[BadRow] = field(default_factory=list)
    bad_count: int = 0
    valid: int = 0
    header: bool = False
    #: Bad rows past this many are counted, not kept.
    keep_bad: int = 1000

    def __iter__(self) -> Iterator[tuple[tuple[Any, ...], str]]:
        columns = self.resource.columns
        fields = [self.resource.field(name) for name in columns]
        parsers = [spec.parse_text for spec in fields]
        width = len(columns)
        expected = f"expected {width} fields ({','.join(columns)})"
        header = [name.lower() for name in columns]
        patterns = [spec.cell_pattern() for spec in fields]
        plain = _plain_line(patterns)
        # The cells a pattern leaves to their field's parser, by position.
        parsed = [(i, parsers[i]) for i, pattern in enumerate(patterns) if pattern is None]
        progress = self.on_progress
        number = 0
        lines = iter(self.source)
        for raw in lines:
            number += 1
            start = number
            if progress is not None and number % 8192 == 0:
                progress(number)
            if '"' not in raw and start > 1 and plain is not None:
                # Most lines: one match checks every string cell; the others parse alone.
                text = raw.rstrip("\r\n")
                match = plain(text)
                if match is not None:
                    read = match.groups()
                    cells = list(read)
                    try:
                        for index, parse in parsed:
                            cells[index] = parse(read[index])
                    except ValueError:
                        self._bad(start, self._why(read))
                        continue
                    self.valid += 1
                    yield tuple(cells), text
                    continue
            if '"' in raw:
                line = raw
                while line.count('"') % 2:  # a quoted field goes on to the next line
                    more = next(lines, None)
                    if more is None:
                        break
                    number += 1
                    line += more
                text = line.rstrip("\r\n")
                cells = next(csv.reader(io.StringIO(text)))
            else:
                text = raw.rstrip("\r\n")
                cells = text.split(",")
            if len(cells) == 1 and not text.strip():
                continue  # a blank line
            if start == 1 and [c.strip().lower() for c in cells] == header:
                self.header = True
                continue
            if len(cells) != width:
                self._bad(start, f"{expected}, found {len(cells)}")
                continue
            try:
                values = tuple([parse(cell) for parse, cell in zip(parsers, cells, strict=True)])
            except ValueError:
                self._bad(start, self._why(cells))
                continue
            self.valid += 1
            yield values, text

    def _why(self, cells: Sequence[str]) -> str:
        """What is wrong with the first cell of a bad row that does not parse."""
        for name, cell in zip(self.resource.columns, cells, strict=True):
            try:
                self.resource.field(name).parse_text(cell)
            except ValueError as error:
                return f"{name} {error}"
        raise AssertionError("a row that did not parse parses")

    def _bad(self, line: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < self.keep_bad:
            self.bad.append(BadRow(line, reason))


def _plain_line(patterns: list[str | None]) -> Callable[[str], re.Match[str] | None] | None:
    """A matcher of a whole unquoted line whose cells the fields' patterns check
    (``FieldSpec.cell_pattern``; a cell without one is any text, parsed after); none when
    no field has a pattern, or for one column (a blank line would match)."""
    if len(patterns) < 2 or all(pattern is None for pattern in patterns):
        return None
    compiled = re.compile(",".join(f"({pattern or '[^,]*'})" for pattern in patterns))
    matcher: Callable[[str], re.Match[str] | None] = compiled.fullmatch
    return matcher


def open_source(source: str, work_dir: Path) -> Path:
    """A local path for SOURCE: itself, or a download of an ``s3://bucket/key`` URL.

    S3 is reached with boto3's usual configuration (credentials, region, and
    AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 for S3-compatible servers).
    """
    if not source.startswith("s3://"):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        return path
    bucket, _, key = source[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an S3 source looks like s3://bucket/key, not {source!r}")
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as error:
        raise ValueError("reading s3:// sources needs: pip install 'twotier[s3]'") from error

    target = work_dir / Path(key).name
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as error:
        raise ValueError(str(error)) from error
    return target
