"""The self-service actions: one module per action (reset_password.py, mfa_reset.py,
group_access.py, ...), each declaring an `Action` (base.py) listed once in registry.py, and the
runner (runner.py) that guards every run the same way. docs/graph.md, "How to add a self-service
action", walks through adding one."""
