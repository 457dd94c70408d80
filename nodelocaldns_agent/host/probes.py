"""Read-only probes of the host: interfaces, local HTTP endpoints, processes, DNS, clock."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

import psutil

from nodelocaldns_agent.errors import HostError


class Interfaces(Protocol):
    def addresses(self) -> dict[str, tuple[str, ...]]:
        """Interface name -> IP addresses bound on it (interfaces without one included)."""
        ...


class PsutilInterfaces:
    def addresses(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, tuple[str, ...]] = {}
        for name, addrs in psutil.net_if_addrs().items():
            result[name] = tuple(
                a.address.split("%", 1)[0]
                for a in addrs
                if a.family in (socket.AF_INET, socket.AF_INET6)
            )
        return result


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str


class HttpGetter(Protocol):
    def get(self, url: str, timeout: float) -> HttpResult:
        """GET ``url``; raises OSError when nothing answers."""
        ...


#: Local endpoints (kubelet healthz, kube-proxy proxyMode) answer a few bytes.
_MAX_HTTP_BODY = 4096


class UrllibGetter:
    def __init__(self) -> None:
        # Never use a proxy from the environment: these URLs are node-local.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, url: str, timeout: float) -> HttpResult:
        try:
            with self._opener.open(url, timeout=timeout) as resp:
                body = resp.read(_MAX_HTTP_BODY)
                return HttpResult(resp.status, body.decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            body = exc.read(_MAX_HTTP_BODY) if exc.fp else b""
            return HttpResult(exc.code, body.decode("utf-8", "replace"))
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise OSError(f"GET {url}: {getattr(exc, 'reason', exc)}") from exc


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    create_time: float
    argv: tuple[str, ...]
    #: the kernel's name of the process (``comm``)
    name: str = ""
    #: ``/proc/<pid>/ns/mnt`` and ``ns/pid`` link targets (``mnt:[4026531841]``); "" when
    #: unreadable
    mnt_ns: str = ""
    pid_ns: str = ""
    #: lines of ``/proc/<pid>/cgroup`` (``hierarchy-ID:controllers:path``)
    cgroup: tuple[str, ...] = ()


class ProcessTable(Protocol):
    def get(self, pid: int) -> ProcessInfo | None:
        """Process ``pid`` as this process sees it (namespaces and cgroup included); None
        when no such process runs (a zombie does not count). :class:`HostError` when it
        runs but cannot be read."""
        ...

    def children(self, pid: int) -> tuple[int, ...]:
        """Pids of the direct children of ``pid`` (none when it does not run)."""
        ...


#: bytes of /proc/<pid>/cgroup read (a line per hierarchy: a few hundred bytes)
_MAX_CGROUP = 16 * 1024


class PsutilProcessTable:
    """Processes from ``/proc`` (psutil for name, argv and start time)."""

    def get(self, pid: int) -> ProcessInfo | None:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                name, argv, started = proc.name(), tuple(proc.cmdline()), proc.create_time()
            mnt_ns = os.readlink(f"/proc/{pid}/ns/mnt")
            pid_ns = os.readlink(f"/proc/{pid}/ns/pid")
            with open(f"/proc/{pid}/cgroup", "rb") as fh:
                cgroup = fh.read(_MAX_CGROUP).decode("utf-8", "replace")
            if not proc.is_running():  # the pid was reused while reading
                return None
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            return None
        except (psutil.Error, OSError) as exc:
            raise HostError(f"/proc/{pid}: cannot read the process: {exc}") from exc
        return ProcessInfo(pid, started, argv, name, mnt_ns, pid_ns, tuple(cgroup.splitlines()))

    def children(self, pid: int) -> tuple[int, ...]:
        try:
            return tuple(child.pid for child in psutil.Process(pid).children())
        except psutil.NoSuchProcess:
            return ()
        except psutil.Error as exc:
            raise HostError(f"/proc/{pid}: cannot list its children: {exc}") from exc


@dataclass(frozen=True)
class DnsAnswer:
    ok: bool
    latency_seconds: float | None
    #: a short, bounded reason when not ok: timeout, refused, rcode-NXDOMAIN, no-answer, error
    reason: str
    detail: str = ""


class DnsProber(Protocol):
    def probe(self, server: str, name: str, timeout: float) -> DnsAnswer: ...


class DnspythonProber:
    """One real A query with dnspython (UDP, TCP when truncated).

    The UDP socket is connected to the server, as glibc's resolver connects its own
    (glibc resolv/res_send.c ``send_dg``: "If our datagram socket is "connected" to the
    server, we get an ECONNREFUSED error ... We can thus detect the absence of a
    nameserver without timing out"): the kernel reports the ICMP
    port unreachable of a bound address where nothing listens (node-cache killed or
    restarting, its address kept) as a refusal at once, where an unconnected socket
    (dnspython's own) waits out the whole timeout, one probe interval of the daemon's."""

    def probe(self, server: str, name: str, timeout: float) -> DnsAnswer:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype

        query = dns.message.make_query(name, dns.rdatatype.A)
        start = time.monotonic()
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect((server, 53))
                response = dns.query.udp(query, server, timeout=timeout, sock=sock)
            if response.flags & dns.flags.TC:
                remaining = max(timeout - (time.monotonic() - start), 0.1)
                response = dns.query.tcp(query, server, timeout=remaining)
        except dns.exception.Timeout:
            return DnsAnswer(False, None, "timeout", f"no answer within {timeout:g}s")
        except ConnectionRefusedError as exc:
            return DnsAnswer(False, None, "refused", str(exc))
        except (OSError, dns.exception.DNSException) as exc:
            return DnsAnswer(False, None, "error", f"{type(exc).__name__}: {exc}")
        latency = time.monotonic() - start
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            return DnsAnswer(False, latency, "rcode", dns.rcode.to_text(rcode))
        if not response.answer:
            return DnsAnswer(False, latency, "no-answer", f"NOERROR but no answer for {name}")
        return DnsAnswer(True, latency, "ok")


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
