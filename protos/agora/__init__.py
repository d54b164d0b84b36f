"""Agora's gRPC contract, versioned by package (``agora.v1``, later ``agora.v2`` beside it)."""
