"""The learned site agents (issue 3).

``features`` (candidate window, per-slot and per-site features, local and global state) ->
``codec`` (VAE, int8 wire code) and ``trigger`` (send when uncertain) -> ``networks`` (pointer
actor, TarMAC peer attention, centralised critic) -> ``ranking`` (Plackett-Luce ranking ->
bids) -> ``agents.market.clear_sim``. ``learned_policy`` runs all of it behind the
simulator's ``Policy`` seam; ``market_env`` is the same game as a PettingZoo ``ParallelEnv``;
``ppo`` and ``trainer`` learn it (SRPT imitation warm start, then PPO); ``checkpoint`` and
``evaluate`` serve ``agora train / evaluate / simulate --policy``.
"""
