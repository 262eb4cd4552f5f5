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
- `slurm.py`     `SiteSlurmSpawner`: JupyterHub's Spawner hooks, wiring the steps below into batchspawner's
                 SlurmSpawner; every Slurm command through its one `slurm_runner`
- `remote.py`    `RemoteSlurmSpawner`: the same over ssh to a login node (`SshRoute`), for a hub in Kubernetes
- `job_state.py` one server's job as one typed object (`ServerJob`), and its form in JupyterHub's state
- `job_control.py` sbatch and scancel (retried, then left to the poller)
- `start_wait.py` waiting for a submitted server: queued, running, its port reported
- `start_log.py` the steps of a start in words, for the progress page
- `resume.py`    finishing a start the previous hub process left pending
- `refused_forms.py` the last refused form of each server, shown again with its errors
- `jupyterhub_internals.py` JupyterHub's private spawn state, behind one version-checked function
"""
