"""The object-storage transport: a replication group's changes in an S3-compatible bucket
(Cloudflare R2, AWS S3, MinIO) through boto3. A shared medium (see ``transports.base``): the
bucket has no node of its own, pages and push answers carry the medium id ``bucket.<GROUP_ID>``,
``push`` stores and applies nothing, every reader decides for itself.

**Layout** under ``<R2_PREFIX>/<GROUP_ID>/``::

    group.json                          the group manifest: {"format": 1, "kind": "group",
                                        "group": ...}; created on first use (conditional put)
    segments/<writer>/<seq:012d>.json   a writer's immutable segments, seq 1, 2, 3, ...
    snapshots/<writer>/<seq:012d>.json  compactions of that writer's stream up to seq
    log/<node>.json                     the node's replication log (its checkpoints)

A manifest naming another group (or not a manifest) refuses the whole medium: ``TransportError``.
It is checked once per transport instance (one GET per cycle).

**Documents.** Segments and snapshots are one canonical JSON object each (sorted keys, no
spaces, ASCII): ``{"format": 1, "kind": "segment"|"snapshot", "group", "writer", "seq",
"count", "items", "sha256", "hmac"?}``; ``sha256`` is the hex SHA-256 of the canonical JSON of
``items``. When ``CONFIGSYNC_SYNC_SECRET`` is set (every node of a group shares it), ``hmac`` is
HMAC-SHA256 keyed with it over ``configsync-bucket/1|kind|group|writer|seq|count|sha256``: whoever
holds the bucket's credentials but not the group's secret cannot add a segment readers accept,
nor move one to another writer, number or group. A reader with the secret refuses an unsigned
document, so every node of a group must agree on whether the secret is set (they do: HTTP peers
need it too). A segment's items are the changes of one pushed batch, verbatim in wire form
(sensitive values are the ciphertext tokens of the feed: nothing here decrypts or re-encodes);
a snapshot's items are ``[seq, index, change]``, the latest change per record (model, natural
key; tombstones included) of the writer's stream up to its number, ordered by their origin
``(seq, index)``.

**Damage.** A segment or snapshot that is not JSON, has another kind, format, group, writer or
number than its key says, a wrong count, checksum or signature is damaged: nothing of it is
applied, that writer's stream stops before it for this read (the cursor does not pass it), a
reason naming the key (never a value) goes to ``self.faults`` (the cycle applies the rest, then
fails the run with it), and the other writers are read as usual. Repaired (the right bytes
uploaded again), it is delivered by the next cycle's pull (a transport instance remembers what
it found damaged and does not download it again for its later pages). A missing segment in the
middle of a stream, or missing ones no snapshot covers, are faults the same way.

**Writing** (``push``): the batch becomes this node's next segment, one ``PutObject`` with
``If-None-Match: *`` (a number already taken, by a second process writing as this node, is
never overwritten: the writer lists after it and takes the next one; R2, S3 and MinIO support
conditional writes, and a server answering ``NotImplemented`` gets plain puts, leaving numbers to
the node's per-peer sync lock). The writer learns its
head once per instance from what is there, with no separate head object that could go stale:
its snapshots (one list: few, older ones are pruned) and its segments after the latest snapshot
(one list: at most about ``BUCKET_SNAPSHOT_EVERY``). After the put, the writer

* writes a snapshot when ``BUCKET_SNAPSHOT_EVERY`` (0: never) segments have been written since
  its latest one: the previous snapshot plus the segments since (never the whole history),
  compacted, stored under the head's number;
* once per instance (so at most once per cycle), applies retention (``BUCKET_RETENTION_DAYS``,
  0: never): deletes its own segments the latest snapshot covers and older snapshots, once older
  than the retention, from one list of its oldest 1,000 segments; never its head segment,
  which is how readers tell an idle writer from a pruned stretch. The age is the object's
  ``LastModified`` against the transport's ``now`` (injectable).

A failure of this upkeep after the segment is stored is a fault, not an error.

**Reading** (``pull``, ``digest``). The cursor is a ``vector`` cursor: per writer, how far it
was read, ``<seq>`` (segments up to seq) or ``<seq>.<offset>`` (segments below seq and the first
offset items of seq, when a page limit split it). Positions are stream coordinates, also while
a snapshot is read: an item's origin ``(seq, index)`` says whether it was delivered. One pull
lists the writers (one ``ListObjectsV2`` of ``segments/`` with ``Delimiter="/"``), then each
other writer's segments with ``StartAfter`` = the key of its last fully read segment (one list
each), and downloads only new segments: an idle pull costs 1 + writers list requests (plus the
manifest and, with ``with_log``, the log: one GET each), whatever the bucket holds. ``echoes``
reads this node's own folder too. A reader that has not read a writer yet, or whose position is
below the oldest segment still there, reads the writer's latest snapshot first (the items whose
origin is at or after its position), then the segments after it: a new node never reads every
segment ever written. A node away longer than the retention gets the snapshot: the latest
version of each record, not the intermediate ones (which last-write-wins would not keep
anyway); its position then jumps to the snapshot's number. Verified documents are cached by key
per instance (they are immutable), so a snapshot or segment split over pages is downloaded once
per cycle.

``backup_only`` data types are stored like any other; the cycle never applies them on pull (the
strategy matrix), so they are not read back automatically.

**Errors.** Unreachable endpoint, missing bucket, refused credentials and any other failed
request are a ``TransportError`` naming the peer, the bucket and the endpoint's host (never a
key or a secret); botocore is configured with ``PEER_TIMEOUT_SECONDS`` as connect and read
timeouts and two attempts. The replication log (``log/<node>.json``) is rewritten whole on
``log_record``; a damaged one reads as empty, which makes both directions start over once.
"""

from configsync.replication.transports.bucket.transport import BucketTransport, bucket_client

__all__ = ["BucketTransport", "bucket_client"]
