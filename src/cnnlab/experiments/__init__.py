"""Experiments: specs that say what varies (spec), a results store on Optuna's storage (store), sweeps that run,
skip and resume every run of a spec (sweep), and comparison reports in HTML and Markdown (report, figures).

    from cnnlab.experiments.spec import load_spec, expand
    from cnnlab.experiments.sweep import SweepOptions, sweep
    from cnnlab.experiments.report import make_report

The recipes in experiments/*.yaml are specs for the course's experiments; `cnnlab sweep` and `cnnlab report` are
the command-line side (cnnlab.cli.experiments_cmd).
"""
