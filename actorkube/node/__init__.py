"""The worker node: the kubelet, container runtimes and kube-proxy (see docs/node.md)."""
