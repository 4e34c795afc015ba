"""Sweeps: run the named presets of conf/sweep/ and turn any multirun folder into a table, plots
and a summary (docs/sweeps.md).

    runner.py       the presets, checking them and running them (`sweep.py <preset>`)
    callbacks.py    the Hydra callbacks of every multirun (job folder names, how it ended)
    records.py      the one reader of sweep folders and job records (metrics.json)
    judge.py        what solving means, solved shares and their 95% Wilson intervals
    tables.py       jobs.csv, the table by configuration and the capacity table (pandas)
    plots.py        the heatmap
    tensorboard.py  the summary as a TensorBoard run
    summarize.py    `sweep.py summarize` and the table a multirun ends with

Nothing is imported here, so reading a record (src.terminal's sweep progress) does not load the
runner, which reaches train's checks.
"""
