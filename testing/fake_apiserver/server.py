"""``FakeApiServer``: the Python face of the fake kube-apiserver."""

from __future__ import annotations

import copy
import importlib
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
from .store import Store

if TYPE_CHECKING:  # the kubernetes client is only imported when asked for
    from kubernetes.client import ApiClient, Configuration

JSON = dict[str, Any]


def _kubernetes_client() -> Any:
    """``kubernetes.client``, imported on first use (the server and CLI stay stdlib-only)."""
    return importlib.import_module("kubernetes.client")


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
        bookmark_interval: float = 1.0,
        history_size: int = 1000,
        watch_timeout: float | None = 1800.0,
        request_log_size: int = 100_000,
    ) -> None:
        self.host = host
        self._requested_port = port
        store = Store(history_size=history_size)
        self.backend = Backend(
            store=store,
            faults=Faults(on_change=store.notify),
            requests=RequestLog(maxlen=request_log_size),
            evictions=EvictionPolicy(),
            bookmark_interval=bookmark_interval,
            watch_timeout=watch_timeout,
        )
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

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
        return self

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
        self._httpd = self._thread = None

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
        """A ``kubernetes.client.Configuration`` pointing at this server."""
        config: Configuration = _kubernetes_client().Configuration()
        config.host = self.url
        config.verify_ssl = False
        return config

    def api_client(self, user_agent: str | None = None) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` for this server; close it when done."""
        client: ApiClient = _kubernetes_client().ApiClient(self.client_configuration())
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

    def delete_object(self, kind: str, name: str, namespace: str | None = None) -> JSON:
        return self.store.delete(resources.resolve(kind), namespace, name)

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
    ) -> JSON:
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
                "status": {"phase": phase},
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
