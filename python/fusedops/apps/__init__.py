"""fusedops.apps: the applications built on the library, one module per job.

    cli             the `fusedops` command (also `python -m fusedops`): info, profile, demo, train
    sysinfo         `fusedops info`: versions, machine, backends, measured memory bandwidth
    profile         `fusedops profile`: time every op on every backend across sizes
    profile_ops     the profiler's op registry, targets and constants (imports no profiler module)
    profile_report  the profiler's tables, CSV, machine description and argument checks
    plots           the figures of `fusedops profile --plot` and `fusedops demo`
    demo            `fusedops demo`: the report folder and the order of its sections
    demo_sections   the demo's sections (digits MLP, autoencoder, L1/L2, optimizer paths, profile)
    train           `fusedops train`: train an MLP or autoencoder from the command line

The apps sit on top of the library: they import fusedops.ops, optim, nn and data, and nothing in
the library imports them (tests/test_imports.py checks both). Importing this package imports none
of its modules.
"""
