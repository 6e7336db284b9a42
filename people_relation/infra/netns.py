"""Several hosts on one machine, for rehearsing what crosses a network between machines.

Host 0 is this machine's own network stack; host k (1, 2, ...) is a Linux network namespace
of its own with one interface, and all of them sit on one bridge, each at its own address
of a subnet: a process run in host k reaches the others only through that network, as on
separate machines (the filesystem stays shared). Made with iproute2 (``ip``), which needs
root; everything is removed afterwards, and what a killed run left is removed first.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from people_relation.errors import PermanentError


@dataclass(frozen=True)
class Host:
    """One host: ``namespace`` None for this machine's own stack."""

    address: str
    interface: str  # its interface on the hosts' network (e.g. for GLOO_SOCKET_IFNAME)
    namespace: str | None = None

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else list(argv)


def loopback_hosts(count: int) -> list[Host]:
    """``count`` hosts that are all this machine, on 127.0.0.1."""
    return [Host("127.0.0.1", "lo") for _ in range(count)]


def _ip(*args: str, check: bool = True) -> None:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as err:
        raise PermanentError(
            "network namespaces need iproute2's `ip` (apt-get install iproute2), or the loopback "
            "address instead (rehearsal.machines.network: loopback)"
        ) from err
    if check and done.returncode != 0:
        raise PermanentError(
            f"`ip {' '.join(args)}` failed: {done.stderr.strip()}. Network namespaces need root (CAP_NET_ADMIN); "
            "without it, use the loopback address (rehearsal.machines.network: loopback)"
        )


@contextmanager
def hosts_on_a_bridge(count: int, subnet: str, prefix: str = "prr") -> Iterator[list[Host]]:
    """``count`` hosts on bridge ``<prefix>-br`` over ``subnet``: host 0 (this machine) at its first
    address, host k in namespace ``<prefix>-m<k>`` at the next ones."""
    network = ipaddress.ip_network(subnet)
    addresses = [str(a) for a in list(network.hosts())[:count]]
    if len(addresses) < count:
        raise PermanentError(f"subnet {subnet} has room for {len(addresses)} hosts, not {count}")
    bridge = f"{prefix}-br"
    names = [(f"{prefix}-m{k}", f"{prefix}-m{k}h", f"{prefix}-m{k}n") for k in range(1, count)]

    def remove() -> None:
        for namespace, outside, _ in names:
            _ip("link", "del", outside, check=False)
            _ip("netns", "del", namespace, check=False)
        _ip("link", "del", bridge, check=False)

    remove()  # what a killed run left
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{addresses[0]}/{network.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        hosts = [Host(addresses[0], bridge)]
        for (namespace, outside, inside), address in zip(names, addresses[1:], strict=True):
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", namespace, "addr", "add", f"{address}/{network.prefixlen}", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            hosts.append(Host(address, inside, namespace))
        yield hosts
    finally:
        remove()
