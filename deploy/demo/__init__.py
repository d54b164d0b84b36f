"""``make run`` (``python -m agora.deploy.demo``): the demo, Agora's main job on its embedded default."""
