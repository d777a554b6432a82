"""Ansible's linear strategy, run through Mitogen (`mitogen` in requirements/dev.in).

Stock Ansible starts a new Python for every task on every host; Mitogen keeps one per host and
sends it the modules. ansible/ansible.cfg selects this strategy for every playbook of the
repository. The plugin ships inside the mitogen package; this file only makes it findable
without naming the virtualenv's site-packages path.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
