"""Snapshots, restore and promotion to lower environments (issue 13).

A subsystem on top of replication and the core; nothing below it imports it (the entry points
``configsync.tasks`` and ``configsync.apps`` excepted).

**The snapshot document** (``configsync-snapshot/1``) is one JSON object::

    {"format": "configsync-snapshot/1",
     "node_id": "<the node that wrote it>",
     "group_id": "<CONFIGSYNC_GROUP_ID>" | null,      # null only when promoted
     "created_at": "<ISO 8601 UTC>",
     "key_ids": ["<key id>", ...],                    # every key id a token of it was made under
     "promoted": false,
     "data_types": ["system_config", "users", ...],   # the data types it covers
     "records": [{"model", "key", "hlc", "origin", "version_vector", "deleted", "data"}, ...],
     "checksum": "sha256:<hex>"}

``records`` are the replication rows (``ReplicatedRecord``) of the covered data types, sorted by
model and key, in wire form: secrets stay the ciphertext tokens of the change feed (nothing
decrypts to write a snapshot). ``checksum`` is the SHA-256 of the canonical JSON of every other
member (``sort_keys``, separators ``,``/``:``, UTF-8, ``ensure_ascii`` off); the file itself is
indented JSON, whose formatting the checksum ignores.

**Tombstones are included** (``deleted: true``, ``data: null``): they are replicated records
with a version of their own, so the snapshot is the whole state of the feed (what was deleted
and when is part of what an operator may need to know from a backup). Restore treats a
tombstone exactly like a record the snapshot does not hold: a live record here is *removed*.
A promoted snapshot leaves tombstones out (their keys may name people, and a restore needs none).

**Restore** (:mod:`configsync.snapshots.services`) refuses, writing nothing, a document that is
malformed, too big (``MAX_SNAPSHOT_BYTES``) or too deeply nested, of an unknown format, whose
checksum fails, of another replication group, or whose tokens were made under key ids this node
lacks (named; never a value). It then compares each covered record with this node's: *added*,
*changed* (the wire form differs; for a secret only "changed" is said), *removed* (live here,
absent or a tombstone in the snapshot), unchanged ones untouched. Applying writes every change
in ONE transaction as new local writes that replicate (``replication_write_version`` under
``acting(via="restore")``: each is in the history and the audit trail), plus one node-wide
``restore`` audit event. Only the data types the snapshot covers are touched.

**Promoted snapshots** (:mod:`configsync.snapshots.promotion`) carry ``"promoted": true``, no
group (``null``: they restore into any group), no ciphertext (every encrypted or sensitive wire
field is ``null``) and, per record, a ``placeholders`` map of plaintext marker values that
restore sets through the model, so they are encrypted with the restoring node's own key.

**Backups to the bucket** (:mod:`configsync.snapshots.bucket`): in the R2 modes the beat writes
a snapshot every ``CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS`` to
``<R2_PREFIX>/<GROUP_ID>/backups/<node>/<YYYYMMDDTHHMMSSZ>.json`` and keeps this node's newest
``CONFIGSYNC_SNAPSHOT_KEEP``; ``configsync snapshot --list-bucket`` lists them and
``configsync restore bucket:<name>`` (or ``bucket:<node>/<name>``) restores one.
"""
