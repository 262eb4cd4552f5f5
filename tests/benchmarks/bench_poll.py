"""The poll's cost to Slurm: 50 running servers among 10,000 other queued jobs, stock batchspawner against ours.

    flock /tmp/aifactory-bench.lock /opt/aifactory/venv/bin/python tests/benchmarks/bench_poll.py \
        [--servers 50] [--others 10000] [--shape array|jobs] [--rounds 5]

Not a test (not collected by pytest). Needs root and the local Slurm cluster.
Bench users bpoll001... (made for the run, removed after with their jobs, also on
failure or Ctrl-C): the first --servers each run one real 1-CPU job (`sleep`, in a
partition `bench-poll` made at run time over the nodes of `standard`: what is
measured is the poll, not a server); the next one queues the --others jobs in the
site partition `standard`, held (`sbatch --hold`): --shape array as arrays of up
to MaxArraySize tasks (the controller keeps a pending array as one record), --shape
jobs as that many separate jobs (one record each, as a centre's queue mostly is;
needs MaxJobCount above it). The last one is the hub's stand-in: a Slurm operator
(AdminLevel=Operator, so that it sees every user's jobs as root does under
PrivateData=jobs) that runs only our side's commands.

No hub is started: each side's poll is driven directly against the real Slurm, as
its hub would drive it, once per round:
- stock: batchspawner.SlurmSpawner.poll() of each of the 50 servers (its own
  `sudo -E -u USER squeue -h -j ID -o '%T %B'`), all 50 at once; a stock hub does
  this every Spawner.poll_interval (30 s) for each server;
- ours: one SlurmPoller.refresh() for all 50 (one `squeue --jobs=...` by id; no
  server is pending, so no pending order is asked); this project's hub does it every
  slurm_poll_interval (10 s);
- ours before #15, for reference: the poll it replaced (`squeue --states=all`
  of every site partition, parsed).
slurmctld's own statistics (`sdiag`, RPCs by user: count and total time, in
microseconds as slurmctld measures them) are read before and after each side's
rounds; a side's figures are the difference for its users only (the servers'
users for stock, the operator for ours), so other work on the cluster is not
counted. Per minute = per round x rounds per minute at each hub's interval.
Every squeue costs slurmctld three RPCs (federation, partitions, then the jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from batchspawner import SlurmSpawner

from aifactory.site import load_site
from aifactory.slurm.runner import SlurmRunner
from aifactory.slurm.squeue import parse_squeue, squeue_argv
from aifactory.spawners.poller import SlurmPoller
from benchlib import BENCH_ACCOUNT, bench_names, bench_partition, bench_users, cleanup_on_signals, run, table

PARTITION = "bench-poll"
QUEUE_PARTITION = "standard"
STOCK_INTERVAL, OURS_INTERVAL = 30.0, 10.0  # JupyterHub's Spawner.poll_interval; hub/config.py's slurm_poll_interval


@dataclass(frozen=True)
class AsUser:
    """A runner route: each command through `sudo -u user` (our side's RPCs are then that user's in sdiag)."""

    user: str

    def argv(self, argv: list[str], env_names: list[str] = ()) -> list[str]:
        return ["sudo", "-u", self.user, "--", *argv]

    def unreachable(self, returncode: int) -> bool:
        return False


class BenchUser:
    """What batchspawner reads of a hub user."""

    def __init__(self, name: str):
        self.name = name


_BY_USER = re.compile(r"^\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)\s+ave_time:\d+\s+total_time:(\d+)")


def sdiag_by_user() -> dict[str, tuple[int, int]]:
    """{user: (RPC count, total µs)} from sdiag's "RPC statistics by user" section."""
    text = run(["sdiag"]).stdout
    section = text.split("statistics by user", 1)[1].split("Pending RPC", 1)[0]
    return {m[1]: (int(m[2]), int(m[3])) for m in map(_BY_USER.match, section.splitlines()) if m}


def rpc_diff(before: dict, after: dict, users: list[str]) -> tuple[int, int]:
    """(count, µs) the `users` added between two sdiag reads; raises if the statistics were reset meanwhile."""
    count = sum(after.get(u, (0, 0))[0] - before.get(u, (0, 0))[0] for u in users)
    micros = sum(after.get(u, (0, 0))[1] - before.get(u, (0, 0))[1] for u in users)
    if count < 0 or micros < 0:
        raise RuntimeError("sdiag's statistics were reset during the run (sdiag --reset by someone else): run again")
    return count, micros


def sbatch(user: str, *args: str) -> str:
    return run(["sbatch", "--parsable", f"--uid={user}", "-A", BENCH_ACCOUNT, "-o", "/dev/null", *args]).stdout.strip()


def queue_others(user: str, count: int, shape: str) -> None:
    """`count` held jobs of `user` in the site partition: arrays (of at most MaxArraySize tasks) or single jobs."""
    common = ["-p", QUEUE_PARTITION, "--hold", "-t", "5", "-c", "1", "--mem=16M", "-J", "bpoll-other", "--wrap", "true"]
    if shape == "array":
        size = int(re.search(r"MaxArraySize\s*=\s*(\d+)", run(["scontrol", "show", "config"]).stdout)[1]) - 1
        for first in range(0, count, size):
            sbatch(user, f"--array=0-{min(size, count - first) - 1}", *common)
        return
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: sbatch(user, *common), range(count)))


def start_servers(names: list[str], timeout: float = 300) -> dict[str, str]:
    """One running 1-CPU `sleep` job per user in the bench partition; {user: job id} once all run."""
    jobs = {n: sbatch(n, "-p", PARTITION, "-c", "1", "--mem=16M", "-t", "30", "-J", "bpoll-server",
                      "--wrap", "sleep 1800") for n in names}
    deadline = time.monotonic() + timeout
    while True:
        states = run(["squeue", "-h", "-j", ",".join(jobs.values()), "-o", "%T"]).stdout.split()
        if states.count("RUNNING") == len(jobs):
            return jobs
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {states.count('RUNNING')} of {len(jobs)} servers running after {timeout:.0f} s")
        time.sleep(2)


async def stock_round(spawners: list[SlurmSpawner]) -> None:
    results = await asyncio.gather(*(s.poll() for s in spawners))
    if any(r is not None for r in results) or any(not s.job_status.startswith("RUNNING") for s in spawners):
        raise RuntimeError(f"stock saw a server stopped: {[s.job_status for s in spawners][:3]}")


def measure(label: str, rounds: int, users: list[str], one_round) -> dict:
    """Run `one_round` `rounds` times; wall seconds of each and the RPCs of `users` in all."""
    walls = []
    before = sdiag_by_user()
    for _ in range(rounds):
        started = time.perf_counter()
        one_round()
        walls.append(time.perf_counter() - started)
    count, micros = rpc_diff(before, sdiag_by_user(), users)
    return {"label": label, "walls": walls, "rpcs": count / rounds, "micros": micros / rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--others", type=int, default=10000)
    parser.add_argument("--shape", choices=("array", "jobs"), default="array")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cleanup_on_signals()
    site = load_site()
    names = bench_names(args.servers + 2, "bpoll")
    servers, queuer, hub_user = names[:args.servers], names[-2], names[-1]
    with bench_users(names) as _, bench_partition(PARTITION, max_cpus=10, oversubscribe=5):
        run(["sacctmgr", "-i", "modify", "user", "where", f"name={hub_user}", "set", "adminlevel=Operator"])
        started = time.monotonic()
        queue_others(queuer, args.others, args.shape)
        queued = run(["squeue", "-h", "--array", "-u", queuer, "-o", "%i"]).stdout.split()
        records = run(["squeue", "-h", "-u", queuer, "-o", "%i"]).stdout.split()  # arrays folded: controller records
        print(f"{len(queued)} other jobs held in {QUEUE_PARTITION} ({len(records)} lines without --array) "
              f"in {time.monotonic() - started:.0f} s")
        jobs = start_servers(servers)
        total = len(run(["squeue", "-h", "--array", "--states=all", "-o", "%i"]).stdout.split())
        print(f"{len(jobs)} servers running; {total} jobs (tasks counted) in the whole queue")

        loop = asyncio.new_event_loop()
        stock = [SlurmSpawner(user=BenchUser(n), exec_prefix="sudo -E -u {username}", req_keepvars="")
                 for n in servers]
        for spawner, name in zip(stock, servers):
            spawner.job_id = jobs[name]
        runner = SlurmRunner(route=AsUser(hub_user), timeout=60)
        poller = SlurmPoller(interval=3600, runner=runner, timeout=60)

        async def watch():
            for job_id in jobs.values():
                poller.watch(job_id, submitted=False)
            poller._task.cancel()  # no background loop: the rounds below are its refreshes, one each
        loop.run_until_complete(watch())

        def ours_round():
            loop.run_until_complete(poller.refresh())
            kinds = {poller.view(j).kind for j in jobs.values()}
            if kinds != {"running"}:
                raise RuntimeError(f"our poller saw {kinds}, not every server running")

        before_argv = squeue_argv(partitions=tuple(p.name for p in site.partitions))
        # slurmctld keeps RPC statistics for at most 200 users: once full (a 5,000-user run before), new users
        # are not counted. Reset them (root; this run holds the bench lock) so the bench users get slots.
        run(["sdiag", "--reset"])

        def before_round():
            listed = parse_squeue(loop.run_until_complete(runner.run(before_argv, timeout=60)))
            if len(listed) < len(queued):
                raise RuntimeError(f"the old poll listed {len(listed)} jobs, fewer than the {len(queued)} queued")

        results = [
            measure("stock batchspawner.SlurmSpawner", args.rounds, servers,
                    lambda: loop.run_until_complete(stock_round(stock))),
            measure("aifactory SlurmPoller (#15)", args.rounds, [hub_user], ours_round),
            measure("aifactory before #15 (whole queue)", args.rounds, [hub_user], before_round),
        ]
        calls_per_round = poller.scheduler_calls / args.rounds
        loop.close()

    per_minute = {results[0]["label"]: 60 / STOCK_INTERVAL, results[1]["label"]: 60 / OURS_INTERVAL,
                  results[2]["label"]: 60 / OURS_INTERVAL}
    stock_ms_min = results[0]["micros"] / 1000 * per_minute[results[0]["label"]]
    rows = []
    for r in results:
        rate = per_minute[r["label"]]
        ms_min = r["micros"] / 1000 * rate
        rows.append([r["label"], f"{60 / rate:.0f} s", f"{r['rpcs']:.0f}", f"{r['micros'] / 1000:.1f}",
                     f"{r['rpcs'] * rate:.0f}", f"{ms_min:.1f}", f"{ms_min / stock_ms_min:.3f}x" if stock_ms_min else "n/a",
                     f"{statistics.median(r['walls']):.2f}", f"{max(r['walls']):.2f}"])
    table(f"The poll of {args.servers} running servers among {len(queued)} other queued jobs "
          f"({args.shape}: {len(records)} queue records), {args.rounds} rounds each; slurmctld's time from sdiag",
          ["side", "interval", "RPCs/round", "ctld ms/round", "RPCs/min", "ctld ms/min", "ctld vs stock",
           "poll wall s (median)", "max"], rows)
    print(f"\nour poller's scheduler_calls per round: {calls_per_round:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
