"""Built-in attacks plugin (installed as ``bench.attacks``).

Membership-inference attacks register here through ``register_attacks`` exactly like
third-party ones (see ``bench.contracts.Attack``).
"""
