"""actorkube's API server: Kubernetes objects on etcd (see docs/apiserver.md).

Everything public is re-exported here; the modules behind it are private.
"""
