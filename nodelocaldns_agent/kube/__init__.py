"""The only package that imports the ``kubernetes`` client.

Everything else speaks the small plain types defined in :mod:`nodelocaldns_agent.kube.types`.
"""
