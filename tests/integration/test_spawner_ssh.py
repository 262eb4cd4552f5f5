"""The hub's SSH access to Slurm (`slurm.access: ssh`, the Helm chart's mode) against a real sshd and real Slurm.

This machine plays the login node as `helm/README.md` asks a centre to set one up: a
private sshd on a loopback port with its own host key (not the system's sshd service), a
service account whose only key is a generated one, `AcceptEnv JUPYTERHUB_* JPY_*`, sudo
that lets the account run exactly `sbatch` as the user, and the account a Slurm operator
(to cancel and see users' jobs).

- `RemoteSlurmSpawner` with the chart's settings asks Slurm for the user's projects, submits
  a server's batch script as the user, follows it with the hub's poller and cancels it,
  every command through ssh.
- A second JupyterHub, run from the configuration, files and environment the chart renders
  for this login node (and its proxy from the chart's arguments), spawns JupyterLab as a
  Slurm job through ssh, serves it through the proxy and stops it.

Everything set up here (sshd, account, sudo rule, Slurm user, hub, proxy, jobs) is removed
afterwards.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from aifactory.site import load_site
from aifactory.site.identity import hub_sudoers
from aifactory.slurm.runner import NoAnswer
from aifactory.spawners.facts import gather_facts
from aifactory.spawners.job_control import cancel_job
from aifactory.spawners.options import validate
from aifactory.spawners.poller import SlurmPoller
from aifactory.spawners.remote import RemoteSlurmSpawner
from aifactory.spawners.script import build_job

# The login node's address on the compute nodes' network: the chart's pod listens there, so the
# servers (Slurm jobs on the nodes) reach it as they reach an Ingress.
LOGIN = load_site(Path(__file__).parents[2] / "hub/site/demo.yaml").hub_api_ip()

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SSHD = "/usr/sbin/sshd"
ACCOUNT = "aifactory-sshtest"  # the chart's slurm.ssh.user on this test's login node
SUDOERS = Path("/etc/sudoers.d/aifactory-sshtest")
USER = "student3"
SERVER = "ssh-e2e"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def remove_account() -> None:
    """Undo the login node's setup (also what a killed earlier run left)."""
    SUDOERS.unlink(missing_ok=True)
    run("sacctmgr", "-i", "delete", "user", "where", f"name={ACCOUNT}", check=False)
    run("userdel", ACCOUNT, check=False)


def sshd_config(directory: Path, port: int) -> str:
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {directory}/host_ed25519",
        f"PidFile {directory}/sshd.pid",
        f"AuthorizedKeysFile {directory}/authorized_keys/%u",
        "StrictModes no",  # the keys lie under /tmp (mode 1777)
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {ACCOUNT}",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "AcceptEnv JUPYTERHUB_* JPY_*",
        "",
    ])


@pytest.fixture(scope="module")
def login_node(cluster):
    """Settings of RemoteSlurmSpawner (as the chart renders them) for a login node on this machine."""
    if not Path(SSHD).exists():
        message = "openssh-server is not installed (make install)"
        if os.environ.get("AIFACTORY_INTEGRATION"):
            pytest.fail(message)
        pytest.skip(message)
    # sshd reads the keys as the account, which also lives here: a directory it can enter (keys stay 600).
    directory = Path(tempfile.mkdtemp(prefix="aifactory-login-node-"))
    directory.chmod(0o755)
    port = free_port()
    remove_account()
    sshd = None
    try:
        # The service account: key login only ('*' is no password, not a locked account), quiet shell.
        run("useradd", "--system", "--shell", "/bin/bash", "--home-dir", str(directory / "home"), "--create-home",
            "--password", "*", ACCOUNT)
        run("sacctmgr", "-i", "add", "user", ACCOUNT, f"account={cluster.projects[0].name}", "adminlevel=Operator")
        rule = directory / "sudoers"
        rule.write_text(hub_sudoers(cluster, ACCOUNT, shutil.which("sbatch")))  # what `aifactory hub sudoers` prints
        rule.chmod(0o440)
        run("visudo", "-c", "-f", str(rule))  # a broken rule would break sudo for everyone
        shutil.copy2(rule, SUDOERS)
        # Keys: the login node's host key, the hub's key (the chart's slurm.ssh.privateKey).
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "host_ed25519"))
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "id"))
        (directory / "authorized_keys").mkdir()
        public = (directory / "id.pub").read_text().strip()
        (directory / "authorized_keys" / ACCOUNT).write_text(
            f'from="127.0.0.1",no-port-forwarding,no-agent-forwarding,no-X11-forwarding {public}\n')
        host_key = (directory / "host_ed25519.pub").read_text().split()
        (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        (directory / "sshd_config").write_text(sshd_config(directory, port))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        run(SSHD, "-t", "-f", str(directory / "sshd_config"))
        sshd = subprocess.Popen([SSHD, "-D", "-f", str(directory / "sshd_config"), "-E", str(directory / "sshd.log")])
        deadline = time.monotonic() + 10
        while not listening(port):
            assert sshd.poll() is None and time.monotonic() < deadline, (directory / "sshd.log").read_text()
            time.sleep(0.1)
        yield {"slurm_access": "ssh", "ssh_login_node": "127.0.0.1", "ssh_port": port, "ssh_user": ACCOUNT,
               "ssh_identity_file": str(directory / "id"), "ssh_known_hosts_file": str(directory / "known_hosts"),
               "ssh_connect_timeout": 5}
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(10)
        remove_account()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def over_ssh(login_node):
    """The runner of a spawner with the chart's settings: its Slurm commands go through the login node."""
    runner = RemoteSlurmSpawner(**login_node).slurm_runner
    assert runner.route.argv(["squeue"], [])[0] == "ssh"
    return runner


async def wait_for(poller: SlurmPoller, job_id: str, kind: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await poller.fresh_view(job_id)
        if view.kind == kind:
            return view
        assert view.kind != "gone", view
        time.sleep(1)  # gentle on the shared controller
    pytest.fail(f"job {job_id} not {kind} within {timeout} s: {poller.view(job_id)}")


async def test_a_server_job_is_submitted_followed_and_cancelled_through_the_login_node(cluster, over_ssh):
    facts = await gather_facts(USER, site=cluster, timeout=30, runner=over_ssh)  # on the login node
    assert facts.accounts and facts.accounts[0] == "project_465000002"
    assert {"students", "course-dask-scaling"} <= facts.groups  # what picks the profiles offered
    options = validate(cluster, facts, {"profile": "cpu", "memory": "1G", "walltime": "10"})
    token = secrets.token_hex(8)
    # A stand-in for the launcher that shows what reached the job, then waits like a server.
    launcher = ["/bin/sh", "-c", 'echo "token=$JUPYTERHUB_API_TOKEN pwd=$(pwd)"; exec sleep 600', "launcher"]
    env = {"JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
           "PATH": os.environ["PATH"]}
    job = build_job(options, cluster.environment(options.environment), user=USER, env_names=list(env),
                    launcher=launcher, server_args=[], server_name=SERVER)
    job_id = ""
    home = Path(pwd.getpwnam(USER).pw_dir)
    try:
        job_id = (await over_ssh.run(job.argv, timeout=60, input=job.script, env=env)).strip()  # sudo -E -u USER sbatch
        assert job_id.isdigit(), job_id
        assert run("squeue", "-h", "-j", job_id, "-o", "%u %j").stdout.split() == [USER, f"jupyter-{USER}-{SERVER}"]
        poller = SlurmPoller(interval=2.0, startup_interval=0.2, timeout=30, runner=over_ssh)  # squeue, sacct over ssh
        poller.watch(job_id)
        running = await wait_for(poller, job_id, "running", timeout=180)
        assert running.partition == "standard"
        # The token went by SendEnv/AcceptEnv, sudo -E and --export, never on a command line; the job
        # made its log in the user's home and runs there.
        log = home / ".aifactory" / f"jupyter-{job_id}.log"
        deadline = time.monotonic() + 30
        while not (log.exists() and log.read_text()):
            assert time.monotonic() < deadline, f"no log {log}"
            time.sleep(0.5)
        assert log.read_text() == f"token={token} pwd={home}\n"
        assert log.stat().st_uid == pwd.getpwnam(USER).pw_uid
        await cancel_job(over_ssh, job_id, poller, logging.getLogger(__name__))  # scancel there, as the operator
        gone = await wait_for(poller, job_id, "gone", timeout=60)
        assert gone.state == "CANCELLED"
    finally:
        if job_id:
            run("scancel", job_id, check=False)
            (home / ".aifactory" / f"jupyter-{job_id}.log").unlink(missing_ok=True)


@pytest.mark.parametrize("problem", ["another host key", "no login node"])
async def test_a_login_node_that_cannot_be_trusted_or_reached_means_no_answer(login_node, tmp_path, problem):
    settings = dict(login_node)
    if problem == "another host key":
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other"))
        other = (tmp_path / "other.pub").read_text().split()
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{settings['ssh_port']} {other[0]} {other[1]}\n")
        settings["ssh_known_hosts_file"] = str(tmp_path / "known_hosts")
    else:
        settings["ssh_port"] = free_port()
    with pytest.raises(NoAnswer):
        await RemoteSlurmSpawner(**settings).slurm_runner.run(["squeue", "--noheader"], timeout=20)


# -- a whole hub as the Helm chart runs it ------------------------------------------------
def chart_pod(login_node: dict, proxy_port: int, hub_port: int, root: Path) -> tuple[dict, list[str]]:
    """Render the chart for this login node; lay the hub container's files out under `root`.

    Returns the hub's environment (container paths mapped under `root`, services on this
    machine) and the proxy container's argv, both as the chart renders them.
    """
    from helm_python import Chart

    from tests.unit.test_helm_chart import FULLNAME, find, pod_files, render

    # The demo site (as text: YAML would read its walltimes as numbers), on other ports, without
    # courses (their formgraders belong to the running hub).
    sections = re.split(r"^(?=[a-z_]+:)", (Path(__file__).parents[2] / "hub/site/demo.yaml").read_text(), flags=re.M)
    kept = [text for text in sections if not text.startswith(("courses:", "hub:"))]
    site = "".join(kept) + f"hub:\n  ip: 127.0.0.1\n  port: {proxy_port}\n  hub_port: {hub_port}\n"
    directory = Path(login_node["ssh_identity_file"]).parent
    values = {
        "site": site,
        "ingress": {"enabled": False},
        "networkPolicy": {"enabled": False},
        # Through the proxy, as via the Ingress, at the address the compute nodes reach this machine on.
        "hub": {"urlForJobs": f"http://{LOGIN}:{proxy_port}"},
        "slurm": {"access": "ssh", "ssh": {
            "loginNode": login_node["ssh_login_node"], "port": login_node["ssh_port"], "user": login_node["ssh_user"],
            "knownHosts": Path(login_node["ssh_known_hosts_file"]).read_text(),
            "privateKey": (directory / "id").read_text()}},
    }
    docs = render(Chart.load(str(Path(__file__).parents[2] / "helm")), values)
    files, env, modes = pod_files(docs)
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(modes[path])
    env = {k: str(root / v.lstrip("/")) if v.startswith("/") else v for k, v in env.items()}
    Path(env["AIFACTORY_HUB_STATE"]).mkdir(parents=True, exist_ok=True)
    (proxy,) = find(docs, "Deployment", f"{FULLNAME}-proxy")["spec"]["template"]["spec"]["containers"]
    return env, proxy["args"]


def on_this_machine(argv: list[str], names: dict[str, str]) -> list[str]:
    """The chart's argv with Kubernetes names and ports replaced by this machine's."""
    for old, new in names.items():
        argv = [arg.replace(old, new) for arg in argv]
    return argv


@pytest.mark.hub
def test_a_hub_rendered_by_the_chart_spawns_through_the_login_node(login_node, tmp_path):
    from tests.unit.test_helm_chart import FULLNAME

    proxy_port, hub_port, api_port = free_port(), free_port(), free_port()
    env, proxy_argv = chart_pod(login_node, proxy_port, hub_port, tmp_path)
    names = {"--ip=0.0.0.0": f"--ip={LOGIN}", "0.0.0.0": "127.0.0.1", f"{FULLNAME}-hub": "127.0.0.1", f"{FULLNAME}-proxy-api": "127.0.0.1",
             "8001": str(api_port)}
    env.update(AIFACTORY_HUB_SERVICE="127.0.0.1", AIFACTORY_PROXY_API_URL=f"http://127.0.0.1:{api_port}",
               PATH=os.environ["PATH"], HOME=str(tmp_path))
    config = Path(env["AIFACTORY_SITE"]).parent / "jupyterhub_config.py"
    local = config.with_name("on_this_machine.py")  # the chart's config; the hub listens on loopback only
    local.write_text(f"load_subconfig({str(config)!r})\nc.JupyterHub.hub_ip = '127.0.0.1'\n")
    token = Path(env["AIFACTORY_HUB_STATE"], "operator-token").read_text().strip()
    headers = {"Authorization": f"token {token}"}
    url = f"http://{LOGIN}:{proxy_port}"
    user, name = USER, "ssh-hub"
    logs = tmp_path / "logs"
    logs.mkdir()
    venv = Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory")) / "venv" / "bin"
    processes = []
    try:
        processes.append(subprocess.Popen(
            on_this_machine(proxy_argv, names), env=env,
            stdout=(logs / "proxy.log").open("w"), stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen(
            [str(venv / "jupyterhub"), f"--config={local}"], env=env, cwd=env["AIFACTORY_HUB_STATE"],
            stdout=(logs / "hub.log").open("w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        while True:
            assert all(p.poll() is None for p in processes), (logs / "hub.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (logs / "hub.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/hub/api/", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        requests.post(f"{url}/hub/api/users/{user}", headers=headers, timeout=30)  # 201, or 409: known
        started = requests.post(f"{url}/hub/api/users/{user}/servers/{name}", headers=headers, timeout=120,
                                json={"profile": "cpu", "memory": "1G", "walltime": "15"})
        assert started.status_code in (201, 202), started.text
        deadline = time.monotonic() + 240
        while True:
            server = requests.get(f"{url}/hub/api/users/{user}", headers=headers, timeout=30).json()["servers"].get(name)
            if server and server["ready"]:
                break
            assert server and time.monotonic() < deadline, (server, (logs / "hub.log").read_text()[-3000:])
            time.sleep(1)
        job_id = server["state"]["job_id"]
        assert run("squeue", "-h", "-j", job_id, "-o", "%u %T").stdout.split() == [user, "RUNNING"]
        # Through the chart's proxy to JupyterLab in the Slurm job.
        reach = requests.get(f"{url}/user/{user}/{name}/api/status", headers=headers, timeout=30)
        assert reach.status_code == 200, reach.text
        # Stop: scancel on the login node; the job leaves the queue ...
        stopped = requests.delete(f"{url}/hub/api/users/{user}/servers/{name}", headers=headers, timeout=120)
        assert stopped.status_code in (202, 204), stopped.text
        deadline = time.monotonic() + 60
        while run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.strip() in ("RUNNING", "COMPLETING"):
            assert time.monotonic() < deadline, f"job {job_id} still running after the stop"
            time.sleep(1)
        # ... cancelled by the login node's account, not by anyone on the hub's side.
        state = run("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State").stdout.strip()
        assert state == f"CANCELLED by {pwd.getpwnam(ACCOUNT).pw_uid}"
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(15)
        run("scancel", f"--user={user}", f"--name=jupyter-{user}-{name}", check=False)
