"""The algorithms of the lecture, one module each.

`specs` holds every algorithm's rules and the class that `algo.name` selects; `base` the contract
the runner relies on (`Algorithm`) and what each algorithm is given (`Context`); `on_policy` and
`fitted_q` the plumbing that two algorithms share. No algorithm module imports another.
"""
