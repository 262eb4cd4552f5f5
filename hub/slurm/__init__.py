"""The one way this platform talks to Slurm (the base layer; see README, Architecture).

`runner` runs a command and says how it failed; `squeue`, `sacct` and `sinfo` build each
command's argv and parse its output, `sbatch` reads the job id it prints; `states` words states
and pending reasons; `accounting` sums core- and GPU-hours; `assoc` reads what the association
manager charges each project's allocation; `projects` says which accounts a user may charge.
"""
