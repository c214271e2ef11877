"""Reading .npz archives that may be damaged or hostile (model files, optimizer states).

np.load's NpzFile reads a member by trusting its .npy header: `read_array` allocates an array
of the shape the header claims, then reads the data into it, so a 100-byte member can ask for
terabytes; and a truncated archive surfaces as zipfile.BadZipFile, EOFError or OSError. Here
every member's header is read first (no data), its dtype checked against an allow-list and its
claimed size against the bytes the archive holds for it; callers check the shapes against what
they expect, and only then read the data (`Archive.read`). Every failure is a ValueError naming
the file and the member.
"""
from __future__ import annotations

import os
import zipfile
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["Archive", "Member", "DTYPES"]

# what fusedops writes: float arrays, int64 step counts and scalars, uint8 masks, bools, and
# unicode strings (the model file's JSON, a state's format and class names)
DTYPES = frozenset("f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1".split())
MAX_TEXT = 1 << 24  # a unicode member (the model file's __meta__ JSON) up to 16 Mi characters


class Member(NamedTuple):
    name: str           # without the .npy suffix
    shape: tuple
    dtype: np.dtype
    fortran: bool
    info: zipfile.ZipInfo
    offset: int         # bytes of .npy header before the data


class Archive:
    """An open .npz archive whose members' headers have all been checked; use as a context
    manager. `members` maps name -> Member; `read(name)` returns the array."""

    def __init__(self, path):
        self.path = (os.fspath(path) if not hasattr(path, "read")
                     else getattr(path, "name", None) or f"<{type(path).__name__}>")
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
                raise
            raise ValueError(f"{self.path}: not a readable .npz archive ({exc})") from None
        try:
            self.members = {}
            for info in self._zip.infolist():
                m = self._header(info)
                if m.name in self.members:
                    raise self.error(m.name, "appears twice in the archive")
                self.members[m.name] = m
        except BaseException:
            self._zip.close()
            raise

    @classmethod
    def of(cls, npz: np.lib.npyio.NpzFile) -> "Archive":
        """The archive behind an NpzFile that np.load returned (no member read yet)."""
        self = cls.__new__(cls)
        self._zip = npz.zip
        self.path = getattr(npz.fid, "name", None) or getattr(npz.zip, "filename", None) or "npz"
        self.members = {}
        for info in self._zip.infolist():
            m = self._header(info)
            self.members[m.name] = m
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()

    def error(self, member, message) -> ValueError:
        return ValueError(f"{self.path}: {member}: {message}")

    def _header(self, info: zipfile.ZipInfo) -> Member:
        name = info.filename
        if not name.endswith(".npy") or info.is_dir():
            raise self.error(name, "is not a .npy member")
        name = name[:-4]
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise self.error(name, "its directory entry claims more bytes than it stores")
        try:
            with self._zip.open(info) as fp:
                version = npy_format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                offset = fp.tell()
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, SyntaxError, TypeError) as exc:
            raise self.error(name, f"unreadable .npy header ({exc})") from None
        dtype = np.dtype(dtype)
        if dtype.kind == "U" and dtype.itemsize <= 4 * MAX_TEXT and not shape:
            pass  # a short text scalar
        elif dtype.str[1:] not in DTYPES:
            raise self.error(name, f"dtype {dtype} is not one fusedops writes")
        count = 1
        for s in shape:
            if not isinstance(s, int) or s < 0:
                raise self.error(name, f"bad shape {shape}")
            count *= s
        if count * dtype.itemsize != info.file_size - offset:
            raise self.error(name, f"its header claims {count * dtype.itemsize} bytes of data "
                                   f"({shape}, {dtype}); the archive holds {info.file_size - offset}")
        return Member(name, tuple(shape), dtype, fortran, info, offset)

    def read(self, name) -> np.ndarray:
        """The array of member `name` (its size already checked against the archive)."""
        m = self.members[name]
        nbytes = m.info.file_size - m.offset
        try:
            with self._zip.open(m.info) as fp:
                fp.read(m.offset)
                data = fp.read(nbytes)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise self.error(name, f"damaged data ({exc})") from None
        if len(data) != nbytes:
            raise self.error(name, f"truncated: {len(data)} of {nbytes} bytes")
        a = np.frombuffer(data, dtype=m.dtype)
        return a.reshape(m.shape, order="F" if m.fortran else "C").copy()
