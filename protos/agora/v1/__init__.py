"""agora.v1: the ``*_pb2*`` modules here are generated from the ``.proto`` files beside them
by ``python -m agora.protos.generate``; edit the ``.proto`` files, never the generated code."""
