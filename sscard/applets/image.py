"""The emulated card's persistent memory (its EEPROM) and the file that holds it.

A card is a file: its image. The image is the card's whole non-volatile state
(file tree, records, keys, PIN, counters, lifecycle) as JSON, encrypted and
authenticated with AES-256-GCM under this installation's emulator key, because
it holds the card's keys and PIN and secrets never lie in files in clear.
Writes are atomic (temporary file, fsync, rename, fsync of the directory): a
killed process leaves the old image or the new one, never a torn one. A file
that fails authentication is refused as corrupt or foreign.

The emulated PSAM (``psam.py``) keeps its state the same way (:class:`SealedImage`
with its own :class:`ImageCodec`); the first 12 bytes of an image name its
kind (``SSCARD-CARD`` or ``SSCARD-PSAM``), so each emulator refuses the other's
images with :class:`WrongImageKind`.

The emulator key is 32 random bytes in ``$SSCARD_EMULATOR_KEY_FILE``, or
``emulator.key`` in the sscard data directory (``$SSCARD_DATA_DIR``, else
``$XDG_DATA_HOME/sscard``, else ``~/.local/share/sscard``), created (mode
0600) on first use.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sscard.errors import InvalidInput, ReaderBusy
from sscard.fileio import atomic_write
from sscard.i18n import _
from sscard.layout.loader import RETIRED_PROFILES
from sscard.paths import data_dir
from sscard.vocab import Algorithm, AppBlock, FileType, KeyType, Lifecycle

FORMAT = 1


class ImageKind(StrEnum):
    """What an image emulates: a social security card or a PSAM (docs/card.md)."""

    CARD = "card"
    PSAM = "psam"

    @property
    def magic(self) -> bytes:
        """The first 12 bytes of an image of this kind (authenticated with the content)."""
        return b"SSCARD-CARD\x00" if self is ImageKind.CARD else b"SSCARD-PSAM\x00"

    @property
    def noun(self) -> str:
        """How messages name the chip."""
        return _("card") if self is ImageKind.CARD else _("PSAM")


MAGIC = ImageKind.CARD.magic
S = TypeVar("S")


class CorruptCardImage(InvalidInput):
    """The card file is not a card image of this installation, or it was altered."""


class WrongImageKind(InvalidInput):
    """The image holds the other kind of chip: a PSAM where a card was expected, or back."""

    def __init__(self, path: Path, found: ImageKind, wanted: ImageKind) -> None:
        super().__init__(
            _("{path} is a {found} image, not a {wanted} image").format(
                path=path, found=found.noun, wanted=wanted.noun
            )
        )
        self.found, self.wanted = found, wanted


class OutdatedCardImage(InvalidInput):
    """The card image emulates the reference card of an earlier sscard, not a national card."""


DEFAULT_ATR = bytes.fromhex("3B8D800100" + b"SSCARDEMU".hex() + "039000")
"""A vendor-like T=1 ATR without its TCK [ours]: 13 historical bytes, category 00,
``'SSCARDEMU'``, then the status indicator ``03 90 00``; :func:`with_tck` completes it.
Nothing recognises a card by it (docs/card.md, "Recognising a card")."""


def with_tck(atr: bytes) -> bytes:
    """``atr`` with its check byte appended, when the ATR offers a protocol other than T=0."""
    return bytes(atr) + bytes([_xor(atr[1:])])


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


class SecretKey:
    """What a card's key and a PSAM's key share: an error counter reset to its limit
    after a successful use, and a repr that never shows the value."""

    version: int
    algorithm: Algorithm
    error_limit: int
    tries_left: int
    value: bytes

    @property
    def limit(self) -> int:
        """What a successful use resets the counter to."""
        return self.error_limit

    def _name(self) -> str:
        """What identifies the key in its repr."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._name()} v{self.version} {self.algorithm}, "
            f"tries {self.tries_left}/{self.error_limit}, value=<redacted>)"
        )


@dataclass(repr=False)
class KeyObject(SecretKey):
    """One key in a DF (spec "Keys"): value, version, algorithm, error counter."""

    type: KeyType
    id: int
    version: int
    algorithm: Algorithm
    error_limit: int
    tries_left: int
    value: bytes

    def _name(self) -> str:
        return f"{self.type}/{self.id:02X}"


@dataclass(repr=False)
class PinObject:
    """The cardholder PIN of a DF: packed BCD value (None until set) and try counter."""

    try_limit: int
    tries_left: int
    value: bytes | None = None

    @property
    def limit(self) -> int:
        """What a successful VERIFY resets the counter to."""
        return self.try_limit

    def __repr__(self) -> str:
        state = "unset" if self.value is None else "set"
        return f"PinObject({state}, tries {self.tries_left}/{self.try_limit})"


@dataclass(eq=False)
class CardFile:
    """MF, DF or EF. DFs have children, keys and maybe a PIN; EFs have content."""

    kind: FileType  # MF, DF, TRANSPARENT, LINEAR_FIXED or LINEAR_VARIABLE
    fid: bytes | None = None
    df_name: bytes | None = None
    sfi: int | None = None
    size: int = 0
    record_count: int = 0
    record_length: int = 0
    read: bytes = b"\x00"
    write: bytes = b"\xff"
    records: list[bytes | None] = field(default_factory=list)
    templates: list[bytes] = field(default_factory=list)  # tag ‖ len of each record
    data: bytearray = field(default_factory=bytearray)
    children: list[CardFile] = field(default_factory=list)
    keys: list[KeyObject] = field(default_factory=list)
    pin: PinObject | None = None
    parent: CardFile | None = field(default=None, repr=False)

    @property
    def is_df(self) -> bool:
        return self.kind.is_df

    def key(self, type: KeyType, id: int) -> KeyObject | None:
        for k in self.keys:
            if k.type == type and k.id == id:
                return k
        return None

    def ancestors(self) -> list[CardFile]:
        """This DF and its parents up to the MF."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent  # type: ignore[assignment]
        return out

    def label(self) -> str:
        if self.kind == FileType.MF:
            return "MF"
        if self.fid is not None:
            return self.fid.hex().upper()
        return (self.df_name or b"").hex().upper()


@dataclass
class CardState:
    """Everything the card remembers across power cycles."""

    profile: str
    serial: bytes
    lifecycle: Lifecycle  # BLANK, PERSONALIZATION, ISSUED or CARD_BLOCKED
    mf: CardFile
    app_block: AppBlock | None = None
    atr: bytes = b""  # what the card answers to a reset; empty: the default vendor-like ATR

    def walk(self) -> list[CardFile]:
        """Every file, depth first from the MF."""
        out: list[CardFile] = []
        stack = [self.mf]
        while stack:
            f = stack.pop()
            out.append(f)
            stack.extend(reversed(f.children))
        return out


# --- JSON form ---------------------------------------------------------------------


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _file_to_json(f: CardFile) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": f.kind}
    for name in ("fid", "df_name"):
        if getattr(f, name) is not None:
            d[name] = _hex(getattr(f, name))
    if f.sfi is not None:
        d["sfi"] = f.sfi
    if f.is_df:
        d["children"] = [_file_to_json(c) for c in f.children]
        d["keys"] = [
            {
                "type": k.type,
                "id": k.id,
                "version": k.version,
                "algorithm": k.algorithm,
                "error_limit": k.error_limit,
                "tries_left": k.tries_left,
                "value": k.value.hex(),
            }
            for k in f.keys
        ]
        if f.pin is not None:
            d["pin"] = {
                "try_limit": f.pin.try_limit,
                "tries_left": f.pin.tries_left,
                "value": _hex(f.pin.value),
            }
        return d
    d.update(read=f.read.hex(), write=f.write.hex())
    if f.kind == FileType.TRANSPARENT:
        d.update(size=f.size, data=bytes(f.data).hex())
    else:
        d.update(
            record_count=f.record_count,
            record_length=f.record_length,
            records=[_hex(r) for r in f.records],
            templates=[t.hex() for t in f.templates],
        )
    return d


def _file_from_json(d: dict[str, Any], parent: CardFile | None) -> CardFile:
    def b(name: str) -> bytes | None:
        v = d.get(name)
        return None if v is None else bytes.fromhex(v)

    f = CardFile(
        kind=FileType(d["kind"]),
        fid=b("fid"),
        df_name=b("df_name"),
        sfi=d.get("sfi"),
        parent=parent,
    )
    if f.is_df:
        f.keys = [
            KeyObject(
                KeyType(k["type"]),
                k["id"],
                k["version"],
                Algorithm(k["algorithm"]),
                k["error_limit"],
                k["tries_left"],
                bytes.fromhex(k["value"]),
            )
            for k in d["keys"]
        ]
        if "pin" in d:
            p = d["pin"]
            value = None if p["value"] is None else bytes.fromhex(p["value"])
            f.pin = PinObject(p["try_limit"], p["tries_left"], value)
        f.children = [_file_from_json(c, f) for c in d["children"]]
        return f
    f.read, f.write = bytes.fromhex(d["read"]), bytes.fromhex(d["write"])
    if f.kind == FileType.TRANSPARENT:
        f.size, f.data = d["size"], bytearray.fromhex(d["data"])
    else:
        f.record_count, f.record_length = d["record_count"], d["record_length"]
        f.records = [None if r is None else bytes.fromhex(r) for r in d["records"]]
        f.templates = [bytes.fromhex(t) for t in d["templates"]]
    return f


def state_to_bytes(state: CardState) -> bytes:
    """Serialize the state (clear JSON; only ever encrypted before it leaves memory)."""
    doc = {
        "kind": ImageKind.CARD,
        "profile": state.profile,
        "serial": state.serial.hex(),
        "lifecycle": state.lifecycle,
        "app_block": state.app_block,
        "atr": state.atr.hex(),
        "mf": _file_to_json(state.mf),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def state_from_bytes(raw: bytes, source: str | None = None) -> CardState:
    source = source or _("the card image")
    doc = json.loads(raw)
    if doc.get("kind", ImageKind.CARD) != ImageKind.CARD:  # images before the PSAM: no kind
        raise WrongImageKind(Path(source), ImageKind(doc["kind"]), ImageKind.CARD)
    if doc.get("profile") in RETIRED_PROFILES:
        successor = RETIRED_PROFILES[doc["profile"]]
        raise OutdatedCardImage(
            _(
                "{source} emulates the reference card of an earlier sscard "
                "(profile {profile}), not a national card; make a new card with "
                "profile {successor}"
            ).format(source=source, profile=doc["profile"], successor=successor)
        ).with_hint(_("make a new card with profile {successor}").format(successor=successor))
    return CardState(
        profile=doc["profile"],
        serial=bytes.fromhex(doc["serial"]),
        lifecycle=Lifecycle(doc["lifecycle"]),
        app_block=AppBlock(doc["app_block"]) if doc.get("app_block") else None,
        mf=_file_from_json(doc["mf"], None),
        atr=bytes.fromhex(doc.get("atr", "")),
    )


# --- storage -----------------------------------------------------------------------


class CardStorage(Protocol):
    """Where the card's EEPROM lives: each ``commit`` happens entirely or not at all."""

    def load(self) -> CardState: ...

    def commit(self, state: CardState) -> None: ...


@dataclass(frozen=True)
class ImageCodec(Generic[S]):
    """How one kind of emulated chip turns its state into image bytes and back."""

    kind: ImageKind
    encode: Callable[[S], bytes]
    decode: Callable[[bytes, str], S]  # (clear JSON, source for messages) → state


class MemoryImage(Generic[S]):
    """EEPROM in memory (tests, benchmarks, batch demos): a serialized snapshot."""

    def __init__(self, state: S, codec: ImageCodec[S]) -> None:
        self.codec = codec
        self._snapshot = codec.encode(state)
        self.writes = 0

    def load(self) -> S:
        return self.codec.decode(
            self._snapshot, _("the {chip} in memory").format(chip=self.codec.kind.noun)
        )

    def commit(self, state: S) -> None:
        self._snapshot = self.codec.encode(state)
        self.writes += 1


def emulator_key() -> bytes:
    """This installation's emulator key, created on first use (mode 0600)."""
    path = Path(os.environ.get("SSCARD_EMULATOR_KEY_FILE") or data_dir() / "emulator.key")
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            key = path.read_bytes()
        else:
            key = os.urandom(32)
            with os.fdopen(fd, "wb") as out:
                out.write(key)
                out.flush()
                os.fsync(out.fileno())
    if len(key) != 32:
        raise CorruptCardImage(
            _("the emulator key {path} is not 32 bytes; restore or delete it").format(path=path)
        )
    return key


def image_kind(path: str | os.PathLike[str]) -> ImageKind | None:
    """The kind of chip the image at ``path`` holds, from its magic (no decryption);
    None when the file is no sscard image."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError:
        return None
    return _kind_of(head)


def is_card_image(path: str | os.PathLike[str]) -> bool:
    """True if the file starts like an sscard image, of a card or a PSAM (no decryption)."""
    return image_kind(path) is not None


def _kind_of(blob: bytes) -> ImageKind | None:
    return next((k for k in ImageKind if blob.startswith(k.magic)), None)


class SealedImage(Generic[S]):
    """EEPROM in an encrypted image file, written atomically.

    The magic at the start names the kind of chip (card or PSAM) and is
    authenticated with the content; an image of the other kind is refused with
    :class:`WrongImageKind`. While the chip is powered, :meth:`acquire` holds an
    exclusive lock on ``PATH.lock``, so two processes never run the same chip at
    once (a served card and an in-process one, say).
    """

    def __init__(
        self, path: str | os.PathLike[str], codec: ImageCodec[S], *, durable: bool = True
    ) -> None:
        self.path = Path(path)
        self.codec = codec
        self.durable = durable
        self._aead = AESGCM(emulator_key())
        self._lock: int | None = None
        self._held = False
        self.writes = 0

    @property
    def kind(self) -> ImageKind:
        return self.codec.kind

    def acquire(self) -> None:
        """Take the chip (exclusive lock); :class:`ReaderBusy` if another process has it."""
        if self._lock is not None:
            return
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReaderBusy(
                _(
                    "the {chip} {path} is in use by another process (is it served "
                    "into a PC/SC reader?); stop that process or use its PC/SC reader"
                ).format(chip=self.kind.noun, path=self.path)
            ) from None
        self._lock = fd

    def hold(self) -> None:
        """Take the chip for good (until :meth:`unhold`), whatever power cycles happen.

        ``sscard virtual serve`` holds its chips: pcscd powers idle cards off,
        and a served chip must not be taken by another process meanwhile.
        """
        self.acquire()
        self._held = True

    def unhold(self) -> None:
        """End :meth:`hold` and give the chip back."""
        self._held = False
        self.release()

    def release(self) -> None:
        """Give the chip back (not while held)."""
        if self._lock is not None and not self._held:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def load(self) -> S:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            raise InvalidInput(
                _("no {chip} image at {path}").format(chip=self.kind.noun, path=self.path)
            ) from None
        found = _kind_of(blob)
        if found is None:
            raise CorruptCardImage(
                _("{path} is not an sscard {chip} image").format(
                    path=self.path, chip=self.kind.noun
                )
            )
        if found != self.kind:
            raise WrongImageKind(self.path, found, self.kind)
        header = found.magic + bytes((FORMAT,))
        if blob[: len(header)] != header:
            raise CorruptCardImage(
                _("{path}: {chip} image format {version} unknown").format(
                    path=self.path, chip=found.noun, version=blob[len(found.magic)]
                )
            )
        nonce, sealed = blob[len(header) : len(header) + 12], blob[len(header) + 12 :]
        try:
            raw = self._aead.decrypt(nonce, sealed, header)
        except (InvalidTag, ValueError):
            raw = None
        try:
            if raw is None:
                raise ValueError("no plaintext")
            return self.codec.decode(raw, str(self.path))
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise CorruptCardImage(
                _(
                    "{path} is corrupt or belongs to another installation (its emulator key "
                    "does not open it); create a new {chip}"
                ).format(path=self.path, chip=self.kind.noun)
            ) from None

    def commit(self, state: S) -> None:
        nonce = os.urandom(12)
        header = self.kind.magic + bytes((FORMAT,))
        blob = header + nonce + self._aead.encrypt(nonce, self.codec.encode(state), header)
        atomic_write(self.path, blob, durable=self.durable)
        self.writes += 1

    def create(self, state: S) -> None:
        """Write a new image; refuses to overwrite an existing file."""
        if self.path.exists():
            raise InvalidInput(
                _("{path} already exists; choose another path or delete it").format(path=self.path)
            )
        self.commit(state)


CARD_CODEC = ImageCodec(ImageKind.CARD, state_to_bytes, state_from_bytes)


class MemoryStorage(MemoryImage[CardState]):
    """A card's EEPROM in memory."""

    def __init__(self, state: CardState) -> None:
        super().__init__(state, CARD_CODEC)


class FileStorage(SealedImage[CardState]):
    """A card's EEPROM in an encrypted image file (``sscard virtual new``)."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        super().__init__(path, CARD_CODEC, durable=durable)
