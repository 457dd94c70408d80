"""The test harness of nodelocaldns-agent: never shipped, never imported by the product.

- :mod:`testing.fake_apiserver`: an in-repo kube-apiserver for the real ``kubernetes``
  client and ``kubectl`` (``python -m testing.fake_apiserver --port P --kubeconfig-out F``)
- :mod:`testing.sandbox`: the sandbox node (:class:`~testing.sandbox.node.SandboxNode`:
  namespaces, layouts, stand-ins) and what surrounds it (cluster, relay, Prometheus)
- :mod:`testing.systemd_node`: the sandbox node with a real systemd under ``systemd-nspawn``
- :mod:`testing.fakes`, :mod:`testing.fakenode`: in-process test doubles of the host objects
  (same layouts and constants as the sandbox node, no namespaces)
- :mod:`testing.demo`: the README's demo (``bash scripts/demo.sh``)

``tests/`` and ``bench/`` import it; an import-linter contract keeps ``nodelocaldns_agent``
from ever importing it, and the wheel and the image hold none of it.
"""
