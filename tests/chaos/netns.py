"""Network namespaces joined by veth pairs: real links between nodes, to cut.

:func:`mesh` (the convergence harness) gives each node a namespace of its own,
``csnet-<pid>-<node>`` (loopback up), and each *directed* link ``x>y`` a veth pair of its own:
one end in ``x``'s namespace, the other in ``y``'s, a /30 between them (``10.231.<n>.1`` at
``x``, ``.2`` at ``y``; addresses never leave their namespaces, so runs in parallel processes may
reuse them).
:meth:`Mesh.set_link` takes the ``x`` end of ``x>y`` down (``x``'s route to ``y`` over it goes:
``x``'s new connections fail at once, its open ones stall) or up again. :func:`socket_in` makes
a socket inside a namespace (``setns`` on the calling thread, and back), which is how the
harness's proxy listens in a node's namespace and connects out of one.

:func:`veth_pair` makes namespaces ``csnet-<pid>-a`` and ``csnet-<pid>-b`` (loopback up in each)
and the pair ``csn<pid>a`` (in ``a``, ``10.231.<n>.1/30``) — ``csn<pid>b`` (in ``b``,
``10.231.<n>.2/30``), and always deletes them again, on any exit, each ``ip`` call bounded in
time; before it makes them it deletes what an earlier run of a process no longer alive left
behind under the same prefix. :meth:`VethPair.down` takes one end down: the kernel drops what
would cross it (established connections stall, new ones find no route or no neighbour) until
:meth:`VethPair.up`.

Needs root and iproute2 with ``ip netns``; :class:`Unavailable` says why not. Namespaces are
always deleted again, on any exit, each ``ip`` call bounded in time, and before new ones are made
the leftovers of processes no longer alive are deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import socket
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

PREFIX = "csnet-"
LINK_PREFIX = "csn"
IP_TIMEOUT = 10.0
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


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
        match = re.fullmatch(rf"{PREFIX}(\d+)-[a-z]+", name)
        if match and not _alive(int(match.group(1))):
            ip("netns", "delete", name, check=False)
            deleted.append(name)
    links = ip("-o", "link", "show", check=False).stdout
    for match in re.finditer(rf"^\d+: ({LINK_PREFIX}(\d+)[a-z]+\d?)[@:]", links, re.MULTILINE):
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


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def socket_in(namespace: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new IPv4 socket of network namespace ``namespace`` (one ``ip netns add`` made): the
    calling thread enters it, makes the socket and returns to its own namespace (a socket keeps
    the namespace it was made in)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"{NETNS_DIR}/{namespace}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(socket.AF_INET, kind)
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


@dataclass
class Mesh:
    """Namespaces per node and a veth pair per directed link (see the module docstring)."""

    namespaces: dict[str, str] = field(default_factory=dict)
    """Node name -> its namespace."""
    links: dict[tuple[str, str], VethPair] = field(default_factory=dict)
    """``(x, y)`` -> the pair of link ``x>y`` (end 0 in ``x``'s namespace, end 1 in ``y``'s)."""

    def address(self, src: str, dst: str) -> str:
        """Where ``src`` reaches ``dst`` over link ``src>dst`` (``dst``'s end of it)."""
        return self.links[(src, dst)].addresses[1]

    def set_link(self, src: str, dst: str, *, up: bool) -> None:
        """Link ``src>dst`` up or down (its ``src`` end)."""
        pair = self.links[(src, dst)]
        if up:
            pair.up(0)
        else:
            pair.down(0)

    def is_up(self, src: str, dst: str) -> bool:
        return self.links[(src, dst)].state(0) != "DOWN"


def available() -> str:
    """Why namespaces cannot be made here, or ``""`` when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    try:
        listed = ip("netns", "list", check=False)
    except Unavailable as exc:
        return str(exc)
    if listed.returncode != 0:
        return f"ip netns is unavailable: {listed.stderr.strip()}"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "no /proc/thread-self/ns/net"
    return ""


@contextlib.contextmanager
def mesh(names: Iterable[str], links: Iterable[tuple[str, str]]) -> Iterator[Mesh]:
    """Namespaces for ``names`` and a veth pair for each directed link of ``links`` (both
    directions of each pair given); all deleted again on exit. :class:`Unavailable` when
    namespaces cannot be made here."""
    reason = available()
    if reason:
        raise Unavailable(reason)
    clean_leftovers()
    pid = os.getpid()
    made: list[str] = []
    result = Mesh()
    try:
        for name in names:
            namespace = f"{PREFIX}{pid}-{name}"
            added = ip("netns", "add", namespace, check=False)
            if added.returncode != 0:
                raise Unavailable(f"ip netns add failed: {added.stderr.strip()}")
            made.append(namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
            result.namespaces[name] = namespace
        directed = [(x, y) for a, b in links for x, y in ((a, b), (b, a))]
        for index, (src, dst) in enumerate(directed, start=1):
            pair = VethPair(
                namespaces=(result.namespaces[src], result.namespaces[dst]),
                interfaces=(f"{LINK_PREFIX}{pid}{src}{dst}0", f"{LINK_PREFIX}{pid}{src}{dst}1"),
                addresses=(f"10.231.{index}.1", f"10.231.{index}.2"),
            )
            (ns_x, ns_y), (if_x, if_y) = pair.namespaces, pair.interfaces
            ip(
                "link",
                "add",
                if_x,
                "netns",
                ns_x,
                "type",
                "veth",
                "peer",
                "name",
                if_y,
                "netns",
                ns_y,
            )
            for namespace, interface, address in zip(
                pair.namespaces, pair.interfaces, pair.addresses, strict=True
            ):
                ip("-n", namespace, "addr", "add", f"{address}/30", "dev", interface)
                ip("-n", namespace, "link", "set", interface, "up")
            result.links[(src, dst)] = pair
        yield result
    finally:
        # Deleting a namespace destroys the veth ends in it, and with them their peers.
        for namespace in made:
            with contextlib.suppress(Exception):
                ip("netns", "delete", namespace, check=False)
