"""How a notebook server becomes a Slurm job.

- `options.py`   typed spawn options: `offers(site, facts)` (what a user may start, with ranges)
                 and `validate(site, facts, payload)` -> ValidatedOptions | OptionsError(field, message)
- `facts.py`     the user's Unix groups, real Slurm associations and reservations (the I/O edge)
- `script.py`    the batch script and sbatch argv: one pure function, tested by equality
- `environments.py` python / Lmod / container launch lines
- `singleuser.py` the launcher in the job: port report, walltime warning, clean stop
- `port_api.py`  the hub endpoint that accepts only a port, from the server's own token
- `poller.py`    one shared squeue per poll interval for all servers; sacct for final states
- `progress.py`  Slurm's reasons and final states in plain words
- `slurm.py`     `SiteSlurmSpawner`, wiring the above into batchspawner's SlurmSpawner
"""
