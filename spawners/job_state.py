"""The state of one server's Slurm job, as one typed object, and its form in JupyterHub's database.

The hub saves `to_state(job)` as soon as sbatch answers and again when the server reports
its port, so a hub restarted at any point finds the job (`from_state`) and either follows
the running server or resumes the start. Both functions are pure; the keys are the ones
the hub has always stored (`job_id` as batchspawner names it), so a restarted hub reads
the state an earlier version wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ServerJob:
    """One server's job: what the hub must remember across restarts."""

    job_id: str = ""            # Slurm's job id, from sbatch --parsable
    job_status: str = ""        # Slurm's final state once the job has left the queue (e.g. CANCELLED)
    submitted_at: float = 0.0   # epoch seconds of the submission (start_timeout counts from it)
    token_sha256: str = ""      # SHA-256 of the job's API token: the port handler's proof of ownership
    awaiting_port: bool = False  # submitted, but the server has not reported its port yet
    node: str = ""              # where the server runs, from squeue
    port: int = 0               # the port the server reported
    stop_reason: str = ""       # why the last server stopped, in words; survives `cleared`
    time_limit_minutes: int = 0  # the job's time limit: the walltime asked at submission, then each extension's

    def cleared(self) -> ServerJob:
        """The state once the server is gone: only the reason it stopped stays (the user sees it)."""
        return ServerJob(stop_reason=self.stop_reason)

    def submitted(self, job_id: str, token_sha256: str, at: float, time_limit_minutes: int = 0) -> ServerJob:
        """sbatch answered: the job exists and waits for its server's port."""
        return replace(self, job_id=job_id, token_sha256=token_sha256, submitted_at=at, awaiting_port=True,
                       node="", port=0, job_status="", time_limit_minutes=time_limit_minutes)

    def extended(self, time_limit_minutes: int) -> ServerJob:
        """Slurm took a new time limit for the running job."""
        return replace(self, time_limit_minutes=time_limit_minutes)

    def listening(self, node: str, port: int) -> ServerJob:
        """The server reported its port on `node`: the start is complete."""
        return replace(self, node=node, port=port, awaiting_port=False)


def to_state(job: ServerJob) -> dict:
    """The JSON-able dict JupyterHub stores for the spawner (only what is set)."""
    state: dict = {}
    if job.job_id:
        state["job_id"] = job.job_id
    if job.job_status:
        state["job_status"] = job.job_status
    if job.stop_reason:
        state["stop_reason"] = job.stop_reason
    if job.job_id:
        state.update(token_sha256=job.token_sha256, submitted_at=job.submitted_at)
        if job.time_limit_minutes:
            state["time_limit_minutes"] = job.time_limit_minutes
        if job.awaiting_port:
            state["awaiting_port"] = True
        elif job.port:
            state.update(ip=job.node, port=job.port)
    return state


def from_state(state: dict) -> ServerJob:
    """`to_state`'s inverse; missing keys take their defaults (JupyterHub passes {} for a new server)."""
    return ServerJob(
        job_id=str(state.get("job_id", "")),
        job_status=str(state.get("job_status", "")),
        submitted_at=float(state.get("submitted_at", 0.0)),
        token_sha256=str(state.get("token_sha256", "")),
        awaiting_port=bool(state.get("awaiting_port", False)),
        node=str(state.get("ip", "")) if state.get("port") else "",
        port=int(state["port"]) if state.get("port") else 0,
        stop_reason=str(state.get("stop_reason", "")),
        time_limit_minutes=int(state.get("time_limit_minutes", 0) or 0),  # 0: saved before limits were kept
    )
