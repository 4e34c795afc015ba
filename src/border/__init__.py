"""Capacity borders by search: for each (cell, vocab, lag), the smallest `model.hidden` that solves
the task in at least a given share of seeds, found on a ladder of sizes (`border.min` to
`border.max`, neighbours at most `border.resolution` apart) by galloping from a start size and
then bisecting between the largest failing and the smallest solving size, instead of a full grid
(docs/sweeps.md, Capacity border by search; results: docs/results/border.md).

How a job is judged (the grid preset's settings, conf/sweep/capacity.yaml): it trains until
val/exact holds its target, or until the validation loss stops improving (the convergence rule),
or at most `trainer.max_steps`; the test metric is measured on the checkpoint validation selects
(best.ckpt), not on whatever weights the budget ended on.

How the search runs: the (cell, vocab) pairs are searched side by side, each going through its lags
in increasing order and starting the next lag at the border the last one found. At a size the seeds
run in order only until the verdict is settled (3 of 5 solving when the share is 0.5), then the
sizes on both sides of the border get every seed, so their intervals rest on all of them. Each round
of jobs is one `train.py -m` multirun on the preset's Hydra launcher (`hydra/launcher=slurm` or any
other on the command line): the job list is a generated config group (`<folder>/.border/border_job/`),
so a job of the search is the grid's job with its overrides, config and run folder
(`<folder>/round_<n>/<cell>_v<vocab>_lag<lag>_h<hidden>_s<seed>/`). A job that completed in any round
is read, never run again, so `border.dir=<folder>` resumes a stopped search; the settings that shape
the jobs are kept in `<folder>/border.yaml`, and a resume with other settings is refused.
Solving assumes a monotone border (more units never hurt); the search checks only the sizes it visits
and reports the largest failing one it saw next to the border.

    spec.py     the search's settings (`parse`), its jobs and the checks before any job
    search.py   the ladder, the gallop-then-bisect search and the lanes that drive it
    rounds.py   running rounds of jobs, reading their records, `run_border` and its result
    tables.py   the result tables
    plots.py    border.png and memory.png
"""
