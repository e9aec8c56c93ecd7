"""An embedded, in-memory Kubernetes API server (aiohttp + orjson) for tests and the sandbox.

It behaves like the real apiserver wherever kubernetes_asyncio and kubectl touch it:
discovery, OpenAPI v3, the verbs, watches with resume and bookmarks, CRDs with schema
validation and pruning, finalizers and namespace deletion; plus fault injection for tests.
"""

from carm.sandbox.kubeapi.server import KubeApiServer, serve_kubeapi

__all__ = ["KubeApiServer", "serve_kubeapi"]
