"""carm: cross-account AWS resource management from Kubernetes, ACK CARM compatible."""

__version__ = "0.1.0"
