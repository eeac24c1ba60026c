"""Reports built from evaluation results: Pareto fronts over operating points, BD-rates, sweeps and plots
(``tools/pareto.py``)."""
