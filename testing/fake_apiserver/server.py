"""``FakeApiServer``: the Python face of the fake kube-apiserver."""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import control, resources
from .backend import Backend
from .evictions import EvictionPolicy
from .faults import Faults
from .handlers import FakeHTTPServer
from .requestlog import RequestLog
from .store import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_WINDOW, Store

if TYPE_CHECKING:  # the kubernetes client is only imported when asked for
    from kubernetes.client import ApiClient, Configuration

JSON = dict[str, Any]

#: how often the housekeeping thread finishes due pod terminations and compacts
HOUSEKEEPING_PERIOD = 0.05
#: kube-apiserver's --etcd-compaction-interval default
DEFAULT_COMPACTION_INTERVAL = 300.0


class FakeApiServer:
    """An in-process fake kube-apiserver on ``http://127.0.0.1:<port>``.

    Use as a context manager (or ``start()``/``stop()``). ``stop()`` ends open watches,
    closes every connection and joins every thread it started.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        bookmark_interval: float = 60.0,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_window: float | None = DEFAULT_HISTORY_WINDOW,
        watch_timeout: float | None = 1800.0,
        request_log_size: int = 100_000,
        compaction_interval: float | None = DEFAULT_COMPACTION_INTERVAL,
        grace_period_scale: float = 1.0,
        too_large_wait: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The defaults are kube-apiserver's: a BOOKMARK about every minute (and 2 s before
        a watch's deadline), watch history kept 75 s (at most ``history_size`` events per
        resource), etcd compacted every 5 minutes, pods terminating for their whole grace
        period, 3 s waits for a resourceVersion the server has not reached.

        Tests and benchmarks shorten them: ``bookmark_interval``, ``history_window`` (None:
        only ``history_size`` counts), ``compaction_interval`` (None: never),
        ``grace_period_scale`` (real seconds per second of a pod's grace period; see also
        :meth:`finish_terminations`), ``too_large_wait``, and ``clock`` (the monotonic clock
        the history window, grace periods and compactions are measured on).
        """
        self.host = host
        self._requested_port = port
        store = Store(
            history_size=history_size,
            history_window=history_window,
            clock=clock,
            grace_period_scale=grace_period_scale,
        )
        self.backend = Backend(
            store=store,
            faults=Faults(on_change=store.notify),
            requests=RequestLog(maxlen=request_log_size),
            evictions=EvictionPolicy(),
            bookmark_interval=bookmark_interval,
            watch_timeout=watch_timeout,
            too_large_wait=too_large_wait,
        )
        self.compaction_interval = compaction_interval
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._housekeeper: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        if self._httpd is not None:
            return self
        self.backend.closing.clear()
        self.backend.faults.rearm()
        self._httpd = FakeHTTPServer((self.host, self._requested_port), self.backend)
        self.backend.server_address = f"{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-apiserver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name=f"fake-apiserver-housekeeping:{self.port}", daemon=True
        )
        self._housekeeper.start()
        return self

    def _housekeeping(self) -> None:
        """Finish due pod terminations (kubelet's part) and run the etcd compactor."""
        store, closing = self.backend.store, self.backend.closing
        next_compaction = store.clock() + (self.compaction_interval or 0.0)
        while not closing.wait(HOUSEKEEPING_PERIOD):
            store.reap_terminations()
            if self.compaction_interval and store.clock() >= next_compaction:
                store.compaction_tick()
                next_compaction = store.clock() + self.compaction_interval

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving: watches end cleanly within ``grace`` s, then connections are cut."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.backend.closing.set()
        self.backend.faults.cancel_sleeps()
        self.backend.store.notify()
        httpd.shutdown()
        deadline = time.monotonic() + grace
        while self.backend.active_watches and time.monotonic() < deadline:
            time.sleep(0.01)
        httpd.close_connections()
        httpd.server_close()  # joins the handler threads
        if thread is not None:
            thread.join()
        if self._housekeeper is not None:
            self._housekeeper.join()
        self._httpd = self._thread = self._housekeeper = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses and clients ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake apiserver is not started")
        return self._httpd.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kubeconfig(self, namespace: str = "default") -> str:
        """A kubeconfig (YAML) for this server: no auth, TLS verification off."""
        return (
            "apiVersion: v1\n"
            "kind: Config\n"
            "preferences: {}\n"
            "clusters:\n"
            "- name: fake\n"
            "  cluster:\n"
            f"    server: {self.url}\n"
            "    insecure-skip-tls-verify: true\n"
            "contexts:\n"
            "- name: fake\n"
            "  context:\n"
            "    cluster: fake\n"
            "    user: fake\n"
            f"    namespace: {namespace}\n"
            "current-context: fake\n"
            "users:\n"
            "- name: fake\n"
            "  user: {}\n"
        )

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> Path:
        """Write :meth:`kubeconfig` to ``path`` atomically; returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(self.kubeconfig(namespace))
        os.replace(tmp, target)
        return target

    def client_configuration(self) -> Configuration:
        """A ``kubernetes.client.Configuration`` for this server, as production builds it
        (see :meth:`api_client`)."""
        with self.api_client() as api:
            configuration: Configuration = api.configuration
        return configuration

    def api_client(self, user_agent: str | None = None) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` for this server, built by the agent's own
        ``load_config`` from a kubeconfig (so configured like production, urllib3 retries
        off: a test sees every 429/503 production would). Close it when done."""
        from nodelocaldns_agent.kube.api import load_config

        with tempfile.TemporaryDirectory(prefix="fake-apiserver-") as tmp:
            client: ApiClient = load_config(str(self.write_kubeconfig(Path(tmp) / "kubeconfig")))
        if user_agent:
            client.user_agent = user_agent
        return client

    # --- shared state --------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self.backend.store

    @property
    def faults(self) -> Faults:
        return self.backend.faults

    @property
    def requests(self) -> RequestLog:
        return self.backend.requests

    @property
    def evictions(self) -> EvictionPolicy:
        return self.backend.evictions

    @property
    def clock(self) -> Callable[[], float]:
        return self.store.clock

    def finish_terminations(self, namespace: str | None = None, name: str | None = None) -> int:
        """End the grace period of terminating pods now (all, or those matching), as a
        kubelet whose containers stopped early does; returns how many went."""
        return self.store.reap_terminations(force=True, namespace=namespace, name=name)

    @property
    def bookmark_interval(self) -> float:
        return self.backend.bookmark_interval

    @bookmark_interval.setter
    def bookmark_interval(self, seconds: float) -> None:
        self.backend.bookmark_interval = seconds

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    @property
    def active_watches(self) -> int:
        return self.backend.active_watches

    # --- objects -------------------------------------------------------------------------------

    def put_object(self, obj: Mapping[str, Any]) -> JSON:
        """Create or overwrite ``obj`` (by its apiVersion/kind) as given, status included."""
        return self.store.put(resources.resolve_object(dict(obj)), dict(obj))

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """The stored object (a copy), or None. ``kind``: ``Node``, ``nodes``, ``lease``..."""
        return self.store.find(resources.resolve(kind), namespace, name)

    def objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        return self.store.list(resources.resolve(kind), namespace)[0]

    def delete_object(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = 0,
    ) -> JSON:
        """DELETE through the store's rules; pods go at once unless a grace period is given
        (None: the pod's own, as a plain DELETE)."""
        options: JSON = {}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        return self.store.delete(resources.resolve(kind), namespace, name, options)

    def add_node(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        *,
        ready: bool = True,
        internal_ip: str = "10.0.0.10",
        kubelet_version: str = "v1.30.0",
    ) -> JSON:
        """A plausible Node (Ready condition, InternalIP, nodeInfo)."""
        return self.put_object(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/hostname": name, **(labels or {})},
                    "annotations": dict(annotations or {}),
                },
                "spec": {},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady",
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": internal_ip},
                        {"type": "Hostname", "address": name},
                    ],
                    # Every field: the client's models reject a partial NodeSystemInfo.
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": f"boot-{name}",
                        "containerRuntimeVersion": "containerd://1.7.0",
                        "kernelVersion": "6.1.0",
                        "kubeProxyVersion": kubelet_version,
                        "kubeletVersion": kubelet_version,
                        "machineID": f"machine-{name}",
                        "operatingSystem": "linux",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "systemUUID": f"uuid-{name}",
                    },
                },
            }
        )

    def add_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        node_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        phase: str = "Running",
        spec: Mapping[str, Any] | None = None,
        ready: bool | None = None,
    ) -> JSON:
        """A pod; ``ready`` (default: ``phase == "Running"``) sets its Ready condition, which
        evictions look at."""
        pod_spec: JSON = (
            copy.deepcopy(dict(spec))
            if spec
            else {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}]}
        )
        if node_name:
            pod_spec["nodeName"] = node_name
        return self.put_object(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
                "spec": pod_spec,
                "status": {
                    "phase": phase,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True"
                            if (phase == "Running" if ready is None else ready)
                            else "False",
                        }
                    ],
                },
            }
        )

    def block_evictions(
        self,
        namespace: str,
        selector: str | Mapping[str, str],
        disruptions_allowed: int = 0,
    ) -> int:
        """Evictions of matching pods get 429 once ``disruptions_allowed`` are used up."""
        return self.evictions.block(namespace, selector, disruptions_allowed)

    def compact(self) -> int:
        """Forget the watch history: resuming from any current resourceVersion gets 410."""
        return self.store.compact()

    def reset(self) -> None:
        """Drop objects, history, faults, the request log and eviction rules."""
        self.backend.reset()

    def state(self) -> JSON:
        return control.state(self.backend)

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 2.0, interval: float = 0.01
    ) -> Any:
        """Poll ``predicate`` until truthy (returned) or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)
