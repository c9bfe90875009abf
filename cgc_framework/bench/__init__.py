"""Standardized benchmark sweeps (``cgc-bench``): grid of configs x seeds as resumable Ray tasks,
one tidy results table, paired tests, plots and a Markdown report.

:mod:`.sweep` plans and runs trials and collects their tables; :mod:`.report` writes the report.
What a data set's files are (for checksums) comes from each evaluator's
:meth:`~cgc_framework.plugin.contracts.Evaluator.data_files`, not from this package.
"""
