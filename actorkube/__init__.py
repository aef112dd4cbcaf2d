"""actorkube: the Kubernetes architecture rebuilt as an actor system on trio."""

__version__ = "0.1.0"
