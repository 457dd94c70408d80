"""nodelocaldns-agent: move kubelet's cluster DNS to NodeLocal DNSCache on IPVS nodes."""

__version__ = "0.1.0"
