"""Two network namespaces joined by one veth pair: a real link between two nodes to cut.

:func:`veth_pair` makes namespaces ``csnet-<pid>-a`` and ``csnet-<pid>-b`` (loopback up in each)
and the pair ``csn<pid>a`` (in ``a``, ``10.231.<n>.1/30``) — ``csn<pid>b`` (in ``b``,
``10.231.<n>.2/30``), and always deletes them again, on any exit, each ``ip`` call bounded in
time; before it makes them it deletes what an earlier run of a process no longer alive left
behind under the same prefix. :meth:`VethPair.down` takes one end down: the kernel drops what
would cross it (established connections stall, new ones find no route or no neighbour) until
:meth:`VethPair.up`.

Needs root and iproute2 with ``ip netns``; :class:`Unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

PREFIX = "csnet-"
LINK_PREFIX = "csn"
IP_TIMEOUT = 10.0


class Unavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip netns``): the reason."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``, bounded in time; :class:`Unavailable` when ``ip`` is missing."""
    try:
        result = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise Unavailable("iproute2 (`ip`) is not installed") from exc
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class VethPair:
    """Namespaces, interfaces and addresses of the two ends (index 0: ``a``, 1: ``b``)."""

    namespaces: tuple[str, str]
    interfaces: tuple[str, str]
    addresses: tuple[str, str]

    def down(self, end: int = 0) -> None:
        """Take end ``end``'s interface down (its peer loses the carrier): the link is cut."""
        ip("-n", self.namespaces[end], "link", "set", self.interfaces[end], "down")

    def up(self, end: int = 0) -> None:
        ip("-n", self.namespaces[end], "link", "set", self.interfaces[end], "up")

    def state(self, end: int = 0) -> str:
        """The interface's operational state as ``ip`` reports it (``UP``, ``DOWN``, …)."""
        shown = ip("-n", self.namespaces[end], "-o", "link", "show", self.interfaces[end])
        match = re.search(r"\bstate (\S+)", shown.stdout)
        return match.group(1) if match else "UNKNOWN"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers() -> list[str]:
    """Delete the namespaces (and so their veths) of this prefix whose process is gone; and any
    veth of this prefix left in the root namespace. The names deleted."""
    deleted = []
    listed = ip("netns", "list", check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-[ab]", name)
        if match and not _alive(int(match.group(1))):
            ip("netns", "delete", name, check=False)
            deleted.append(name)
    links = ip("-o", "link", "show", check=False).stdout
    for match in re.finditer(rf"^\d+: ({LINK_PREFIX}(\d+)[ab])[@:]", links, re.MULTILINE):
        if not _alive(int(match.group(2))):
            ip("link", "delete", match.group(1), check=False)
            deleted.append(match.group(1))
    return deleted


@contextlib.contextmanager
def veth_pair() -> Iterator[VethPair]:
    """Two fresh namespaces joined by a veth pair (see the module docstring); always removed."""
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root (ip netns add)")
    clean_leftovers()
    pid = os.getpid()
    subnet = f"10.231.{pid % 250 + 1}"
    pair = VethPair(
        namespaces=(f"{PREFIX}{pid}-a", f"{PREFIX}{pid}-b"),
        interfaces=(f"{LINK_PREFIX}{pid}a", f"{LINK_PREFIX}{pid}b"),
        addresses=(f"{subnet}.1", f"{subnet}.2"),
    )
    made: list[str] = []
    try:
        for namespace in pair.namespaces:
            result = ip("netns", "add", namespace, check=False)
            if result.returncode != 0:
                raise Unavailable(f"ip netns add failed: {result.stderr.strip()}")
            made.append(namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        (ns_a, ns_b), (if_a, if_b) = pair.namespaces, pair.interfaces
        ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for namespace, interface, address in zip(
            pair.namespaces, pair.interfaces, pair.addresses, strict=True
        ):
            ip("-n", namespace, "addr", "add", f"{address}/30", "dev", interface)
            ip("-n", namespace, "link", "set", interface, "up")
        yield pair
    finally:
        # Deleting a namespace destroys the veth end in it, and with it the other end; the
        # namespace itself goes when its last process does (the caller's nodes, killed first).
        for namespace in made:
            with contextlib.suppress(Exception):
                ip("netns", "delete", namespace, check=False)
