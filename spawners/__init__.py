"""How a notebook server becomes a Slurm job.

- `options.py`   the spawner's side of the site's options spec (`aifactory.site.options`): `offers(site, facts)`
                 (what a user may start, with ranges) and `validate(site, facts, payload)` -> ValidatedOptions |
                 OptionsError listing every wrong field
- `form.py`      the spawn form, rendered from `templates/options_form.html`
- `facts.py`     the user's Unix groups, real Slurm associations and reservations (the I/O edge)
- `script.py`    the batch script and sbatch argv: one pure function, tested by equality
- `singleuser.py` the launcher in the job: port report, walltime warning, clean stop
- `port_api.py`  the hub endpoint that accepts only a port, from the server's own token
- `poller.py`    one shared squeue per poll interval for all servers; sacct for final states
- `progress.py`  Slurm's reasons and final states in plain words
- `slurm.py`     `SiteSlurmSpawner`, wiring the above into batchspawner's SlurmSpawner
"""
