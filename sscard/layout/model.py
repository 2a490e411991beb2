"""The typed, immutable card profile (docs/card.md; format in docs/layout.md).

Built by :mod:`sscard.layout.loader` from profile JSON; bytes inside, hex only
in :meth:`Profile.to_data` (the JSON form, which validates as a profile again).
File types, key types and algorithms are the enums of :mod:`sscard.vocab`
(the loader turns the profile's strings into them).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.keys.scheme import KeyScheme, KeySlot
from sscard.layout.codecs import RecordCodec, codec_for
from sscard.vocab import Algorithm, FileType

DF_TYPES = tuple(t for t in FileType if t.is_df)
RECORD_TYPES = tuple(t for t in FileType if t.is_record)

_CONDITION = re.compile(r"^(free|never|pin|ext-auth\(([^,()]+),([0-9A-Fa-f]{2})\)|sm\(([^()]+)\))$")


class AccessCondition(NamedTuple):
    """One way to satisfy an access rule: ``free``, ``never``, ``pin``,
    ``ext-auth`` (EXTERNAL AUTHENTICATE with key ``key_id`` of ``df``) or ``sm``
    (line protection with the STK of ``df``)."""

    kind: str
    df: str | None = None
    key_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> AccessCondition:
        """Parse the profile form, e.g. ``ext-auth(SSSE,01)`` or ``sm(DF01)``."""
        m = _CONDITION.match(text)
        if not m:
            raise InvalidInput(_("invalid access condition"), [("access", repr(text))])
        if m.group(2):
            return cls("ext-auth", m.group(2), int(m.group(3), 16))
        if m.group(4):
            return cls("sm", m.group(4))
        return cls(text)

    def __str__(self) -> str:
        if self.kind == "ext-auth":
            return f"ext-auth({self.df},{self.key_id:02X})"
        if self.kind == "sm":
            return f"sm({self.df})"
        return self.kind


class Access(NamedTuple):
    """Access rules of an EF: each operation lists alternatives (any one suffices)."""

    read: tuple[AccessCondition, ...]
    write: tuple[AccessCondition, ...]

    @property
    def read_is_free(self) -> bool:
        """True if anybody may read the file."""
        return any(c.kind == "free" for c in self.read)


class RecordItem(NamedTuple):
    """One record of a record EF and the data item it holds."""

    file: str
    no: int
    tag: int
    length: int
    encoding: str
    field: str
    value: str | None = None
    description: str = ""
    read: tuple[AccessCondition, ...] | None = None  # None: the EF's read rule

    @property
    def name(self) -> str:
        """How errors name this record, e.g. ``EF06 record 2 (name)``."""
        return _("{file} record {no} ({field})").format(
            file=self.file, no=self.no, field=self.field
        )

    @property
    def codec(self) -> RecordCodec:
        """The codec of this record."""
        return codec_for(self.encoding, self.tag, self.length, self.name)

    @property
    def constant(self) -> Any:
        """The fixed value the profile sets (decoded form), or ``None``."""
        if self.value is None:
            return None
        return bytes.fromhex(self.value) if self.encoding == "binary" else self.value


class FileSpec(NamedTuple):
    """One file of the tree: MF, DDF, DF or EF."""

    id: str
    type: FileType
    parent: str | None = None
    fid: bytes | None = None
    df_name: bytes | None = None
    sfi: int | None = None
    record_count: int | None = None
    record_length: int | None = None
    size: int | None = None
    description: str = ""
    access: Access | None = None
    records: tuple[RecordItem, ...] = ()

    @property
    def is_df(self) -> bool:
        """True for MF, DDF and DF."""
        return self.type.is_df

    def record(self, no: int) -> RecordItem:
        """The record with number ``no``; :class:`KeyError` if the file has none."""
        for item in self.records:
            if item.no == no:
                return item
        raise KeyError(f"{self.id} record {no}")


class PinSpec(NamedTuple):
    """The cardholder PIN object."""

    df: str
    length: int
    encoding: str
    try_limit: int


class CommandSet(NamedTuple):
    """The command set variant: which MAC, how long, which cipher block size."""

    variant: str
    mac: str
    mac_length: int
    block_size: int


class Profile(NamedTuple):
    """A loaded card profile; look files up by id with :meth:`file`, :meth:`df`, :meth:`ef`."""

    name: str
    description: str
    production: bool
    algorithm: Algorithm
    command_set: CommandSet
    pin: PinSpec
    files: tuple[FileSpec, ...]
    key_scheme: KeyScheme
    extends: tuple[str, ...] = ()
    key_city: str | None = None

    def file(self, id: str) -> FileSpec:
        """The file with this id; :class:`KeyError` naming it if absent."""
        for f in self.files:
            if f.id == id:
                return f
        raise KeyError(id)

    def df(self, id: str) -> FileSpec:
        """The MF, DDF or DF with this id."""
        f = self.file(id)
        if not f.is_df:
            raise KeyError(f"{id} is not a DF")
        return f

    def ef(self, id: str) -> FileSpec:
        """The EF with this id."""
        f = self.file(id)
        if f.is_df:
            raise KeyError(f"{id} is not an EF")
        return f

    def children(self, id: str) -> tuple[FileSpec, ...]:
        """The files directly under ``id``, in profile order."""
        return tuple(f for f in self.files if f.parent == id)

    def path(self, id: str) -> tuple[FileSpec, ...]:
        """The files from the MF down to ``id``."""
        chain = [self.file(id)]
        while chain[-1].parent is not None:
            chain.append(self.file(chain[-1].parent))
        return tuple(reversed(chain))

    def records(self) -> tuple[RecordItem, ...]:
        """Every record of every EF, in profile order."""
        return tuple(r for f in self.files for r in f.records)

    @property
    def spec_version(self) -> str | None:
        """The spec version of EF05 item 03 (``"3.00"``), if the profile sets it."""
        item = next((r for r in self.records() if r.field == "spec_version"), None)
        return item.value if item is not None else None

    @property
    def generation(self) -> str | None:
        """The first character of the spec version: ``"3"`` for 3.0 cards, ``"2"`` for 2.0."""
        version = self.spec_version
        return version[:1] if version else None

    def record_by_tag(self, ef_id: str, tag: int) -> RecordItem:
        """The record of EF ``ef_id`` whose item has ``tag``; :class:`KeyError` if none."""
        for item in self.ef(ef_id).records:
            if item.tag == tag:
                return item
        raise KeyError(f"{ef_id} tag {tag:02X}")

    def record_readers(self, item: RecordItem) -> tuple[AccessCondition, ...]:
        """Who may read ``item``: its own rule, else its EF's."""
        if item.read is not None:
            return item.read
        access = self.ef(item.file).access
        return access.read if access is not None else ()

    def to_data(self) -> dict[str, Any]:
        """The resolved profile as JSON data (valid profile JSON, hex for bytes)."""
        return {
            "name": self.name,
            "description": self.description,
            "production": self.production,
            **({"key_city": self.key_city} if self.key_city else {}),
            "algorithm": self.algorithm,
            "command_set": {
                "variant": self.command_set.variant,
                "mac": self.command_set.mac,
                "mac_length": self.command_set.mac_length,
                "block_size": self.command_set.block_size,
            },
            "pin": {
                "df": self.pin.df,
                "length": self.pin.length,
                "encoding": self.pin.encoding,
                "try_limit": self.pin.try_limit,
            },
            "files": [_file_data(f, self.key_scheme.in_df(f.id)) for f in self.files],
        }


def _file_data(f: FileSpec, keys: tuple[KeySlot, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f.id, "type": f.type}
    optional: dict[str, Any] = {
        "parent": f.parent,
        "fid": f.fid.hex().upper() if f.fid is not None else None,
        "df_name": f.df_name.hex().upper() if f.df_name is not None else None,
        "sfi": f.sfi,
        "record_count": f.record_count,
        "record_length": f.record_length,
        "size": f.size,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if f.description:
        out["description"] = f.description
    if f.access is not None:
        out["access"] = {
            "read": [str(c) for c in f.access.read],
            "write": [str(c) for c in f.access.write],
        }
    if keys:
        out["keys"] = [
            {
                "type": k.type,
                "id": k.id,
                "version": k.version,
                "algorithm": k.algorithm,
                "levels": k.levels,
                "error_limit": k.error_limit,
            }
            for k in keys
        ]
    if f.records:
        out["records"] = [_record_data(r) for r in f.records]
    return out


def _record_data(r: RecordItem) -> dict[str, Any]:
    d: dict[str, Any] = {
        "no": r.no,
        "tag": f"{r.tag:02X}",
        "length": r.length,
        "encoding": r.encoding,
        "field": r.field,
    }
    if r.value is not None:
        d["value"] = r.value
    if r.read is not None:
        d["read"] = [str(c) for c in r.read]
    if r.description:
        d["description"] = r.description
    return d
