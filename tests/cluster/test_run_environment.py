"""What a run inherits from its Ray worker (``run_account.run_environment``): none of Ray's
own variables -- a probe found ``__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR`` (Agora's worker
set-up hook) in every run's environment, which a job's own ``ray.init`` would pick up."""

from __future__ import annotations

from agora.agents.cluster.run_account import RunAccount, run_environment


def test_rays_variables_are_not_inherited_and_the_rest_is():
    base = {"PATH": "/usr/bin", "RAY_ADDRESS": "x:1", "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR":
            "agora.agents.process", "_RAY_X": "1", "MY_RAY_OPTION": "kept",
            "PYTHONBREAKPOINT": "ray.util.rpdb.set_trace", "LANG": "C.UTF-8"}
    assert run_environment(base, None) == {"PATH": "/usr/bin", "MY_RAY_OPTION": "kept",
                                           "LANG": "C.UTF-8"}


def test_a_run_as_another_user_gets_that_users_home_and_names():
    env = run_environment({"HOME": "/root", "USER": "root"},
                          RunAccount("agora-run", 1001, 1001, "/home/agora-run"))
    assert env == {"HOME": "/home/agora-run", "USER": "agora-run", "LOGNAME": "agora-run"}
