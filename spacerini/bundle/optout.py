"""Opt-out: remove owners' documents and listed ids from every backend of a bundle, audited."""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spacerini.backends import build_params
from spacerini.bundle.build import _build_locked, _StoredDocs
from spacerini.bundle.open import Bundle, open_bundle
from spacerini.bundle.publish import beside, bundle_lock
from spacerini.errors import BundleError
from spacerini.preprocess.optout import owners_of

logger = logging.getLogger(__name__)


def optout(
    path: str | os.PathLike[str],
    *,
    owners: Sequence[str] | None = None,
    ids: Iterable[str] | None = None,
    request_id: str | None = None,
    threads: int = 1,
    progress: bool = True,
    wait: bool = True,
) -> dict[str, Any]:
    """Removes opted-out owners' documents and listed ids from every backend of a bundle.

    Under the bundle's lock, the docstore is read and the bundle is rebuilt from it without
    those documents, with the same backends and parameters, and swapped in atomically; the old
    tree is deleted before this returns. Afterwards no search, count, find, membership or owner
    query returns them, and running apps switch to the new generation. The manifest's
    ``audit_log`` records the removal: how many names and ids, the request id, and the SHA-256
    of each removed document id and an HMAC of each owner's comparison key (keyed by
    :func:`optout_key`, kept beside the bundle), never a name or a text. An
    owner who owns every document can be removed: the result is an empty bundle. A later
    rebuild of the bundle from its source (:func:`spacerini.bundle.build_bundle` over the same
    folder) leaves the removed documents out again (:class:`EarlierOptouts`).

    Args:
        path: The bundle folder.
        owners: Owner names, matched as the owner lookup matches them (case, accents and runs
            of whitespace or punctuation do not matter: "Jane  Doe" is "jane doe"). An email
            address also matches its stand-in in a bundle whose PII was redacted at index time
            (:func:`spacerini.preprocess.pii.owner_pseudonym`).
        ids: Document ids.
        request_id: The removal request this applies (recorded in the audit log).
        threads: Threads for the rebuild.
        progress: Show progress bars.
        wait: Wait for another command changing the bundle (else raise BundleLockedError).

    Returns:
        The audit entry that was recorded.

    Raises:
        PreprocessError: Neither owners nor ids were given.
        BundleNotFoundError: No bundle at ``path``.
        OwnerNotFoundError: No document matches any owner or id given; nothing was changed.
        BundleLockedError: ``wait`` is False and another command holds the lock.
    """
    from spacerini.errors import OwnerNotFoundError, PreprocessError
    from spacerini.preprocess.pii import owner_aliases

    given = {_owner_key(o): str(o) for o in owners or () if _owner_key(o)}
    wanted_owners = {key: key for key in given}  # comparison key -> the given name's key
    for key, name in given.items():
        for alias in owner_aliases(name)[1:]:  # an email: its stand-in in a bundle redacted at index time
            wanted_owners.setdefault(_owner_key(alias), key)
    wanted_ids = {str(i).strip() for i in ids or () if str(i).strip()}
    if not wanted_owners and not wanted_ids:
        raise PreprocessError("opt-out needs at least one owner name or document id")
    root = Path(path).expanduser().resolve()
    with bundle_lock(root, wait=wait):
        old = open_bundle(root)  # read under the lock: a concurrent opt-out has finished by now
        try:
            removed, matched = _optout_matches(old, set(wanted_owners), wanted_ids)
            owners_found = {wanted_owners[key] for key in matched}
            if not removed:
                what = " or ".join(
                    part for part in (
                        f"owner(s) {', '.join(sorted(given))}" if given else "",
                        f"{len(wanted_ids):,} listed id(s)" if wanted_ids else "",
                    ) if part
                )  # fmt: skip
                raise OwnerNotFoundError(
                    f"{root}: no document of {what} is in this bundle; nothing was changed "
                    "(owner names are matched as `spacerini owner` matches them)"
                )
            missing = set(given) - owners_found
            if missing:
                logger.warning("%d owner name(s) given have no document in %s", len(missing), root)
            params: dict[str, dict[str, Any]] = {}
            for name, report in old.manifest["backends"].items():
                accepted = build_params(name)
                params[name] = {k: v for k, v in (report.get("params") or {}).items() if k in accepted}
            secret = optout_key(root, create=True) if wanted_owners else b""  # read (or made) once
            entry: dict[str, Any] = {
                "action": "optout",
                "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "request_id": request_id,
                "owners": len(given),
                "owners_not_found": len(missing),
                "ids": len(wanted_ids),
                "ids_not_found": len(wanted_ids - removed),
                "removed": len(removed),
                "removed_id_sha256": sorted(_sha256(d) for d in removed),
                # every owner asked for (and an email's stand-in), so that a rebuild of this bundle
                # from its source leaves out their documents too, new ones included; keyed by a
                # secret kept beside the bundle, so that the log never tells who (a plain hash of a
                # name can be confirmed by guessing it)
                "removed_owner_hmac": sorted({_owner_hmac(key, secret) for key in wanted_owners}),
            }
            before = dict(old.manifest)

            def carry_over(manifest: dict[str, Any]) -> None:
                manifest["source"] = before.get("source", manifest["source"])
                manifest["preprocess"] = list(before.get("preprocess", []))
                manifest["audit_log"] = [*before.get("audit_log", []), entry]

            docs = _StoredDocs(
                (doc for doc in old.iter_docs() if doc.id not in removed), before.get("source") or {}
            )
            rebuilt = _build_locked(
                docs, root, backends=old.backends, backend_params=params, format=None, id_field=None,
                fields=None, preprocess=None, preprocess_options=None, threads=threads, progress=progress,
                finish_manifest=carry_over, allow_empty=True,
                shards=len(before.get("shards") or []) or None,
            )  # fmt: skip
            generation = rebuilt.generation
            rebuilt.close()
        finally:
            old.close()
    from spacerini.bundle.copies import warn_stale_copies

    warn_stale_copies(root, generation, "this opt-out removed")  # a push or a Space still serves them
    return entry


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _owner_hmac(key: str, secret: bytes) -> str:
    return hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def optout_key_path(bundle: str | os.PathLike[str]) -> Path:
    """The secret that keys the owner entries of a bundle's audit log: ``.NAME.optout-key``
    beside the bundle (like its lock), never inside it, so it is not published with it."""
    return beside(bundle, "optout-key")


def optout_key(bundle: str | os.PathLike[str], *, create: bool = False) -> bytes | None:
    """The bundle's opt-out key (None when there is none and ``create`` is False)."""
    path = optout_key_path(bundle)
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable opt-out key ({exc}); restore it from a backup") from None
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return optout_key(bundle)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret.hex() + "\n")
    return secret


class EarlierOptouts:
    """The opt-outs recorded in a bundle's audit log, applied again when the bundle is rebuilt.

    ``spacerini index SOURCE --out BUNDLE`` over an existing bundle would otherwise bring back
    every document an opt-out removed (the source still holds them). A rebuild leaves out each
    document whose id an earlier opt-out removed, and each document of an owner an earlier
    opt-out named (by the HMAC of the owner's comparison key under the bundle's opt-out key, as
    the audit log records it), and keeps the audit log.
    """

    def __init__(self, audit_log: Sequence[Any], secret: bytes | None = None) -> None:
        self.audit_log = [entry for entry in audit_log if isinstance(entry, dict)]
        self.id_hashes: set[str] = set()
        owner_hashes: set[str] = set()
        for entry in self.audit_log:
            if entry.get("action") in ("optout", "rebuild"):
                self.id_hashes.update(h for h in entry.get("removed_id_sha256") or () if isinstance(h, str))
                owner_hashes.update(h for h in entry.get("removed_owner_hmac") or () if isinstance(h, str))
        self.secret = secret
        #: Owners named by earlier opt-outs that cannot be matched: the key beside the bundle is gone.
        self.owners_unmatched = bool(owner_hashes) and secret is None
        self.owner_hashes = owner_hashes if secret is not None else set()
        self.left_out = 0
        #: SHA-256 of the ids left out by owner only (new documents of an opted-out owner): the
        #: rebuild's audit entry records them, so that they stay out even if the key is lost.
        self.new_id_hashes: list[str] = []

    @classmethod
    def of(cls, root: Path) -> EarlierOptouts | None:
        """Those of the bundle at ``root``; None when there is no bundle there or it holds none."""
        from spacerini.bundle.manifest import MANIFEST

        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        log = manifest.get("audit_log") if isinstance(manifest, dict) else None
        if not isinstance(log, list) or not log:
            return None
        return cls(log, optout_key(root))

    def __bool__(self) -> bool:
        return bool(self.id_hashes or self.owner_hashes)

    def removes(self, doc: Any) -> bool:
        """True (and counted) when an earlier opt-out removed ``doc``."""
        digest = _sha256(doc.id)
        hit = digest in self.id_hashes
        if not hit and self.owner_hashes:
            assert self.secret is not None
            hit = any(_owner_hmac(_owner_key(name), self.secret) in self.owner_hashes for name in owners_of(doc))
            if hit:
                self.new_id_hashes.append(digest)
        self.left_out += hit
        return hit

    def entry(self) -> dict[str, Any] | None:
        """The rebuild's audit entry (None when it left nothing out)."""
        if not self.left_out:
            return None
        return {
            "action": "rebuild",
            "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "optouts_reapplied": self.left_out,
            "removed_id_sha256": sorted(set(self.new_id_hashes)),
        }


def _owner_key(name: Any) -> str:
    """An owner name as the owner lookup compares it (:func:`spacerini.backends.owners.normalise`)."""
    from spacerini.backends.owners import normalise

    return normalise(str(name))


def _optout_matches(bundle: Bundle, owners: set[str], ids: set[str]) -> tuple[set[str], set[str]]:
    """The ids of the documents an opt-out removes, and which of ``owners`` own any document."""
    from spacerini.records import owner_names

    removed: set[str] = set()
    found: set[str] = set()
    for row in bundle.docstore.iter_meta():
        docid = row["id"]
        if docid in ids:
            removed.add(docid)
        if owners:
            meta = json.loads(row["meta"]) if row["meta"] else {}
            fields = json.loads(row["fields"]) if row["fields"] else {}
            names = owner_names(meta.get("owner")) or owner_names(fields.get("owner"))
            hit = {_owner_key(n) for n in names} & owners
            if hit:
                found |= hit
                removed.add(docid)
    return removed, found
