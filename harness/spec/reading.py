"""Reading a study file: bytes to one YAML mapping, every failure one StudyError line (unreadable,
not UTF-8, binary, bad syntax, duplicate keys, not a mapping)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import StudyError


class DuplicateKey(yaml.constructor.ConstructorError):
    pass


class StudyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses duplicate keys: PyYAML keeps the last one silently, so
    `train: {steps: 3, steps: 5}` would run 5 steps without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # unhashable: the base class reports it
                continue
            if first is not key_node.start_mark:
                here = key_node.start_mark
                raise DuplicateKey(
                    None,
                    None,
                    f"duplicate key '{key}' at line {here.line + 1}, column {here.column + 1} "
                    f"(first given at line {first.line + 1}, column {first.column + 1})",
                    here,
                )
        return super().construct_mapping(node, deep=deep)


MAX_NODES = 100_000  # values in a study once YAML aliases are expanded (the largest shipped study has < 1,000)


def check_size(value: Any, limit: int = MAX_NODES) -> None:
    """Refuse a value whose aliases expand past `limit` nodes (a YAML alias bomb: a few lines that
    expand to billions when the study is copied, hashed or written out). Stops at the limit."""
    count, stack = 0, [value]
    while stack:
        v = stack.pop()
        count += 1
        if count > limit:
            raise StudyError(
                f"the YAML expands to more than {limit:,} values (aliases '*x' repeat what they point at)",
                fix="write the values out, without nested aliases",
            )
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def read_yaml(path: Path, where: str) -> Any:
    """The parsed file, or one StudyError line: unreadable, not UTF-8, binary, bad syntax, duplicate keys."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise StudyError(
            f"cannot read the study file: {e.strerror or e}", where=where, fix="check the path and its permissions"
        ) from None
    try:
        text = blob.decode("utf-8-sig")  # a UTF-8 BOM is harmless
    except UnicodeDecodeError as e:
        line = blob[: e.start].count(b"\n") + 1
        if b"\0" in blob and not blob.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise StudyError("not a text file (binary data)", where=where, fix="give the study's .yaml file") from None
        raise StudyError(
            f"not UTF-8 text: byte 0x{blob[e.start]:02x} at line {line} cannot be decoded",
            where=where,
            fix="save the file as UTF-8",
        ) from None
    try:
        value = yaml.load(text, Loader=StudyLoader)  # noqa: S506 (a SafeLoader subclass)
        check_size(value)
        return value
    except StudyError as e:
        raise e.at(where) from None
    except DuplicateKey as e:
        raise StudyError(str(e.problem), where=where, fix="keep one of them (YAML would silently keep the last)") from None
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        code = ord(e.character) if isinstance(e.character, str) else e.character
        what = "binary data" if code == 0 else f"the unprintable character #x{code:04x}"
        raise StudyError(f"{what} at line {line}", where=where, fix="a study is plain YAML text; remove the character") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise StudyError(
            f"YAML syntax error at {pos}: {problem}", where=where, fix="fix the YAML syntax (indentation, colons, brackets)"
        ) from None


def read_study_mapping(path: str | Path) -> dict:
    """The study file's top-level mapping, unvalidated (StudyError when missing, unreadable or not a mapping)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        hint = ", ".join(sorted(p.name for p in Path("studies").glob("*.yaml"))) if Path("studies").is_dir() else ""
        raise StudyError("study file not found", where=where, fix=f"check the path{'; shipped studies: ' + hint if hint else ''}")
    raw = read_yaml(path, where)
    if not isinstance(raw, dict):
        got = "empty" if raw is None else f"a YAML {type(raw).__name__}"
        raise StudyError(
            f"a study must be a YAML mapping, this file is {got}",
            where=where,
            fix="start with 'name: ...' and 'grid: ...' (see studies/quickstart.yaml)",
        )
    return raw
