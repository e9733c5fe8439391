"""Opt-out at build time: leave out the documents of owners who asked, or ids listed in a file ("optout").

Owners are matched case-insensitively against ``Doc.meta["owner"]``, as The Stack's "Am I in
The Stack?" opt-out matches GitHub user names. Ids come from a set or from a file with one id
per line (blank lines and lines starting with ``#`` are ignored). Removing documents from a
bundle that already exists is done on top of :func:`read_optout_file`.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spacerini.errors import CorpusError, CorpusNotFoundError
from spacerini.preprocess.base import BaseStep, StepOptionError, as_names
from spacerini.preprocess.pii import owner_aliases
from spacerini.records import Doc, owner_names


def read_optout_file(path: str | os.PathLike[str]) -> set[str]:
    """Reads an opt-out list: one id (or owner name) per line.

    Args:
        path: A UTF-8 text file. Blank lines and lines starting with ``#`` are ignored;
            surrounding whitespace is stripped.

    Returns:
        The set of ids.

    Raises:
        CorpusNotFoundError: The file does not exist.
        CorpusError: The path is a folder or the file is not UTF-8 text.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise CorpusNotFoundError("no such opt-out file (one id per line)", path=str(path))
    if file.is_dir():  # a pipe (`--ids <(...)`, /dev/fd/N) or a FIFO is read like a file
        raise CorpusError("the opt-out list must be a file with one id per line, not a folder", path=str(path))
    ids: set[str] = set()
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):  # else the BOM joins the first id
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                item = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"the opt-out file is not UTF-8 text ({exc.reason}); re-encode it as UTF-8",
                    path=str(path),
                    line=number,
                ) from None
            if item and not item.startswith("#"):
                ids.add(item)
    return ids


def owners_of(doc: Doc) -> list[str]:
    """A document's owners (``meta["owner"]``, else ``fields["owner"]``): one name or co-owners."""
    return owner_names(doc.meta.get("owner") if doc.meta else None) or owner_names(
        doc.fields.get("owner") if doc.fields else None
    )


class OptOut(BaseStep):
    """Removes the documents of opted-out owners and the opted-out ids ("optout").

    Args:
        owners: Owner names (a list or a comma-separated string), matched case-insensitively.
        ids: Document ids to remove (a list or a comma-separated string).
        ids_file: A file of ids, one per line (see :func:`read_optout_file`), added to ``ids``.
        owners_file: A file of owner names, one per line, added to ``owners``.

    Raises:
        StepOptionError: Nothing to opt out was given.
        CorpusNotFoundError: A file does not exist.
    """

    name = "optout"

    def __init__(
        self,
        *,
        owners: Sequence[str] | str | None = None,
        ids: Iterable[str] | str | None = None,
        ids_file: str | os.PathLike[str] | None = None,
        owners_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        owner_names = set(as_names(owners, what="optout owners") or ())
        id_set = set(as_names(ids, what="optout ids") or ())
        if ids_file is not None:
            id_set |= read_optout_file(ids_file)
        if owners_file is not None:
            owner_names |= read_optout_file(owners_file)
        if not owner_names and not id_set:
            raise StepOptionError(
                "the optout step needs owners and/or ids (optout.owners=NAME, optout.ids_file=FILE)"
            )
        self.owners = frozenset(o.casefold() for o in owner_names)
        # An email also matches its stand-in, for when the pii step ran first (index mode).
        self._aliases = frozenset(
            alias.casefold() for o in owner_names if "@" in o for alias in owner_aliases(o)[1:]
        )
        self.ids = frozenset(id_set)
        # Names and ids are the people's own request: the manifest records how many, not who.
        self.params = {
            "owners": len(self.owners),
            "ids": len(self.ids),
            "ids_file": None if ids_file is None else str(ids_file),
            "owners_file": None if owners_file is None else str(owners_file),
        }
        self._ids_found: set[str] = set()

    def _reset(self) -> None:
        self._ids_found = set()

    def _process(self, doc: Doc) -> Doc | None:
        if doc.id in self.ids:
            self._ids_found.add(doc.id)
            self._removed("id", doc)
            return None
        if self.owners:
            if any(
                owner.casefold() in self.owners or owner.casefold() in self._aliases for owner in owners_of(doc)
            ):
                self._removed("owner", doc)
                return None
        return doc

    def _extra_report(self) -> dict[str, Any]:
        # Examples would name opted-out documents; the report keeps counts only.
        return {"examples": {}, "ids_not_found": len(self.ids - self._ids_found)}
