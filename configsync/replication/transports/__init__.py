"""Transports: how changes travel to and from a peer (HTTP now; database, object storage later)."""
