"""The one liveness check: a running process is alive, an ended one (zombie or reaped) is not."""

import subprocess
import sys
import time

from aifactory.site.processes import pid_alive


def test_a_running_process_is_alive_and_an_ended_one_is_not_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while pid_alive(child.pid):  # a zombie until wait() below
            assert time.monotonic() < deadline, "a killed, unreaped child still counts as alive"
            time.sleep(0.05)
        with open(f"/proc/{child.pid}/stat") as stat:
            assert stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)

