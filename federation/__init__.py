"""Federated training of the site agents over organisations that share weights, never data.

``learner`` (the SiteLearner seam and the weight checks), ``client_app`` (a Flower ClientApp
over a learner), ``grid`` (a Flower Grid over in-process or remote sites), ``server``
(Flower's FedAvg / FedMedian / FedTrimmedAvg), ``secagg`` (Flower's SecAgg+), ``ppo_learner``
(Agora's PPO as a site learner), ``domains`` (named setups of non-identical organisations),
``train`` (``agora train --federated``: rounds, metrics, checkpoints, resume).
"""
