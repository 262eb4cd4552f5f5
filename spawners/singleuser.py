"""The launcher inside the job: report the port, run the server, watch the walltime.

    python -m aifactory.spawners.singleuser -- jupyterhub-singleuser [args...]

Standard library only (it starts before the server, on every spawn):

1. runs the server as its child with a free port in `JUPYTERHUB_SERVICE_URL`, and
   `AIFACTORY_JOB_END` (epoch seconds) and `AIFACTORY_SESSION_FILE` in its
   environment, so extensions can show the time left;
2. reports the port only once the server's own process tree listens on it (read
   from /proc): another server on the node may take a port between the moment it
   is found free and the moment the server binds it (batchspawner PR #58); the
   hub's single-user server then exits (it has `port_retries = 0`) and the
   launcher starts it again on another port;
3. reports the port to the hub at `$JUPYTERHUB_API_URL/aifactory/port` with the
   server's own token (the hub accepts nothing but that port), retrying for
   `REPORT_SECONDS` while the hub is restarting;
4. on SIGUSR1 (Slurm's warning, `--signal=B:USR1@...`) records the warning in the
   session file; on SIGTERM (the end of the walltime or scancel) stops the server
   cleanly and exits with its status;
5. exits with `GPU_IDLE_EXIT` when the server stopped itself because its GPUs and
   kernels were idle (the workbench leaves `{"reason": GPU_IDLE_REASON}` in
   `AIFACTORY_STOP_FILE` first): the hub reads that exit code in accounting and
   tells the user why (`progress.stop_message`);
6. names in `AIFACTORY_SERVER_EXTENSIONS_OFF` the server extensions this user cannot use
   (`unused_extensions`), which the shared environment's jupyter_server_config.py leaves off, and
   sets `AIFACTORY_SERVER_START`, which the environment's aifactory-server-start.pth reads (and
   removes, so kernels never see it) as the server's Python starts: jsonschema's IRI format checks,
   which build ~35 Earley parsers at import (rfc3987_syntax; no Jupyter schema uses those formats),
   stay out. A server's start cost 4 to 5 CPU-seconds, and a class of 30 starting at once shares a
   few cores.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse, urlunparse

from aifactory.site.files import atomic_write

# Starts of the server on a fresh port when the last one was taken meanwhile.
PORT_ATTEMPTS = 5
# Seconds the server may take to listen on its port.
LISTEN_SECONDS = 300
# Seconds the report is retried while the hub does not answer (a hub restart) or does not wait yet (409).
REPORT_SECONDS = 900
# The exit code of a server stopped for idle GPUs (EX_TEMPFAIL: nothing broke, the resources were wanted
# elsewhere), and the reason the workbench's server extension leaves in the stop file.
GPU_IDLE_EXIT = 75
GPU_IDLE_REASON = "gpu-idle"
# nbgrader's server extensions (its Assignments and Courses panels, the formgrader, validation) serve a
# user who is in a course: a member of the course's Unix group (`aifactory.courses.exchange.layout`).
NBGRADER_EXTENSIONS = (
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
)
COURSE_GROUP_PREFIX = "course-"
# Live help (hub/live_help.py) and the real-time collaboration it runs on serve a course's people only; outside
# courses they stay off with nbgrader (JupyterLab's side with them: jupyter-config/no-nbgrader's page config).
COLLABORATION_EXTENSIONS = ("jupyter_server_ydoc", "jupyter_server_fileid", "aifactory.extensions.workbench.live_help")
# The instructor's: the formgrader and the list of courses a user grades stay off for a course's student (no Unix
# group `course-<id>-trainers`); JupyterLab hides their panels with them (aifactory.extensions.workbench.course_lab).
TRAINER_GROUP_SUFFIX = "-trainers"
INSTRUCTOR_EXTENSIONS = ("nbgrader.server_extensions.course_list", "nbgrader.server_extensions.formgrader")
# Read and removed by the shared environment's aifactory-server-start.pth in the server's own process.
SERVER_START = "AIFACTORY_SERVER_START"
# jupyter-lsp serves language servers; with none installed it only searches for ~20 of them at each start.
LSP_EXTENSION = "jupyter_lsp"
LANGUAGE_SERVERS = ("pylsp", "jedi-language-server", "pyright-langserver", "basedpyright-langserver", "pyrefly",
                    "texlab", "bash-language-server", "typescript-language-server", "yaml-language-server",
                    "sql-language-server")


def unused_extensions(groups: list[str], has_language_server: bool) -> list[str]:
    """The server extensions left off for a user in `groups`: nbgrader's outside courses, its instructor's
    for a student, jupyter-lsp without a language server. Each costs a tenth of a second to most of a
    CPU-second at every start."""
    courses = [group for group in groups if group.startswith(COURSE_GROUP_PREFIX)]
    if not courses:
        off = [*NBGRADER_EXTENSIONS, *COLLABORATION_EXTENSIONS]
    elif any(group.endswith(TRAINER_GROUP_SUFFIX) for group in courses):
        off = []
    else:
        off = list(INSTRUCTOR_EXTENSIONS)
    return off if has_language_server else [*off, LSP_EXTENSION]


def group_names() -> list[str]:
    """This process's Unix groups by name (the job's, as Slurm set them from the user's)."""
    names = []
    for gid in {os.getgid(), *os.getgroups()}:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def language_server_on(path: str | None) -> bool:
    """Whether one of the language servers jupyter-lsp finds by their command is on `path`."""
    return any(shutil.which(name, path=path) for name in LANGUAGE_SERVERS)


def free_port() -> int:
    """A port free now; it may be taken before the server binds it (hence `serves_port`)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def listening(table: str) -> list[tuple[int, int, str]]:
    """(port, owner's uid, socket inode) of each listening socket in a /proc/net/tcp or tcp6 table."""
    sockets = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A":
            sockets.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[7]), fields[9]))
    return sockets


def listening_inodes(table: str, port: int) -> set[str]:
    """Socket inodes listening on `port` in a /proc/net/tcp or tcp6 table."""
    return {inode for found, _, inode in listening(table) if found == port}


def parent_pids(stats: dict[int, str]) -> dict[int, int]:
    """{pid: parent pid} from /proc/<pid>/stat texts ('12 (some name) S 7 ...')."""
    parents = {}
    for pid, text in stats.items():
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[pid] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it."""
    tree, grown = {root}, True
    while grown:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grown = bool(below)
    return tree


def _read(path: str) -> str:
    try:
        with open(path) as text:
            return text.read()
    except OSError:
        return ""


def serves_port(root: int, port: int) -> bool:
    """Whether a process of `root`'s tree has a socket listening on `port`."""
    inodes = listening_inodes(_read("/proc/net/tcp"), port) | listening_inodes(_read("/proc/net/tcp6"), port)
    if not inodes:
        return False
    stats = {int(pid): _read(f"/proc/{pid}/stat") for pid in os.listdir("/proc") if pid.isdigit()}
    for pid in descendants(root, parent_pids(stats)):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def accepts_connections(port: int) -> bool:
    """Whether something listens on `port` of this node (a connect costs microseconds; the
    kernel builds /proc/net/tcp for every socket of the node, milliseconds of CPU)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_listening(child: subprocess.Popen, port: int, timeout: float = LISTEN_SECONDS) -> bool:
    """True once the child's tree listens on `port`; False if the child exits (or hangs) before.

    Polled ten times a second by every server starting on the node, so the cheap
    connect comes first and /proc is read only once something answers on the port.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        if accepts_connections(port) and serves_port(child.pid, port):
            return True
        time.sleep(0.1)
    return False


def report_port(port: int, seconds: float = REPORT_SECONDS) -> None:
    """POST {"port": port}; retried with backoff while the hub is unreachable or not waiting yet, fatal if refused."""
    url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/aifactory/port"
    body = json.dumps({"port": port}).encode()
    delay, deadline = 0.5, time.monotonic() + seconds
    while True:
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != 409:
                sys.exit(f"aifactory: the hub refused the port report: {error.code} {error.read()[:200]!r}")
            print(f"aifactory: the hub answered {error.code}; retrying", file=sys.stderr, flush=True)
        except OSError as error:
            print(f"aifactory: hub not reachable ({error}); retrying", file=sys.stderr, flush=True)
        if time.monotonic() + delay > deadline:
            sys.exit("aifactory: could not report the server's port to the hub")
        time.sleep(delay)
        delay = min(delay * 2, 10)


def write_session(path: str, data: dict) -> None:
    atomic_write(path, json.dumps(data), 0o600)


def stop_code(path: str, code: int) -> int:
    """The launcher's exit code: `GPU_IDLE_EXIT` when the server left the idle-GPU reason in `path`."""
    try:
        with open(path) as text:
            reason = json.load(text).get("reason")
    except (OSError, ValueError, AttributeError):
        return code
    return GPU_IDLE_EXIT if reason == GPU_IDLE_REASON else code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.exit("usage: python -m aifactory.spawners.singleuser -- SERVER [ARGS...]")
    env = dict(os.environ)
    service = urlparse(env.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/"))
    job = env.get("SLURM_JOB_ID", "local")
    ends_at = int(time.time()) + 60 * int(env.get("AIFACTORY_WALLTIME_MINUTES", "0") or 0)
    session_dir = os.path.join(os.path.expanduser("~"), ".aifactory")
    os.makedirs(session_dir, exist_ok=True)
    session_file = os.path.join(session_dir, f"session-{job}.json")
    session = {"job_id": job, "port": None, "ends_at": ends_at, "warned_at": None}
    write_session(session_file, session)
    env["AIFACTORY_JOB_END"] = str(ends_at)
    env["AIFACTORY_SESSION_FILE"] = session_file
    env["AIFACTORY_STOP_FILE"] = stop_file = os.path.join(session_dir, f"stop-{job}.json")
    if os.path.exists(stop_file):
        os.unlink(stop_file)  # a requeued job's or an earlier run's
    env["AIFACTORY_SERVER_EXTENSIONS_OFF"] = ",".join(
        unused_extensions(group_names(), language_server_on(env.get("PATH"))))
    env[SERVER_START] = "1"

    children: list[subprocess.Popen] = []
    stopping: list[int] = []

    def warn(signum, frame):
        session["warned_at"] = int(time.time())
        write_session(session_file, session)
        left = max(0, ends_at - session["warned_at"])
        print(f"aifactory: walltime ends in {left} s; the server will stop then", file=sys.stderr, flush=True)

    def stop(signum, frame):
        print(f"aifactory: signal {signum}: stopping the server", file=sys.stderr, flush=True)
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # Handlers first: Slurm's signals may come as soon as the job runs.
    signal.signal(signal.SIGUSR1, warn)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        env["JUPYTERHUB_SERVICE_URL"] = urlunparse(service._replace(netloc=f"0.0.0.0:{port}"))
        child = subprocess.Popen(argv, env=env)
        children[:] = [child]
        if wait_listening(child, port):
            break
        if child.poll() is None:
            child.kill()
        code = child.wait()
        if stopping:
            return code
        print(f"aifactory: the server did not listen on port {port} (exit {code}; attempt {attempt} of "
              f"{PORT_ATTEMPTS}); trying another port", file=sys.stderr, flush=True)
    else:
        return code or 1
    session["port"] = port
    write_session(session_file, session)
    try:
        report_port(port)
    except SystemExit:
        child.terminate()
        child.wait()
        raise
    code = stop_code(stop_file, child.wait())
    print(f"aifactory: server exited with {code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
