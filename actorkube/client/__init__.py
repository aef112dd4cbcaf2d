"""actorkube's API client, informers and work queue (see docs/apiserver.md).

Everything public is re-exported here; the modules behind it are private.
"""
