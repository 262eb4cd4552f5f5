"""The launcher widget, driven in-process with a fake cluster (no Slurm)."""

from aifactory.extensions.dask.access import AccessRefused
from aifactory.extensions.dask.job_states import WorkerSummary
from aifactory.extensions.dask.options import OptionsRefused, choose_options
from aifactory.extensions.dask.widget import Launcher, error_sentence, form_values, requested_options, status_html
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE

SITE = load_site(DEMO_SITE)


class FakeCluster:
    """Records what the widget asks; checks options like SiteCluster does."""

    instances: list["FakeCluster"] = []

    def __init__(self, profile, **requested):
        site_profile = SITE.profile(profile)
        self.options = choose_options(site_profile, SITE.partition(site_profile.partition), requested)
        self.profile = profile
        self.requested = requested
        self.slurm_job_name = "dask-cpu-fake"
        self.calls: list[tuple] = []
        self.closed = False
        self.replacing_stopped = None
        self.dashboard_link = "/user/student1/proxy/8787/status"
        FakeCluster.instances.append(self)

    def scale(self, n):
        self.calls.append(("scale", n))

    def adapt(self, minimum, maximum):
        self.calls.append(("adapt", minimum, maximum))

    def worker_status(self):
        return WorkerSummary(2, 1, 1, 1, ("Job 7 is pending: other jobs have higher priority.",))

    def close(self):
        self.closed = True


def launcher(user="student1"):
    return Launcher(site=SITE, cluster_factory=FakeCluster, user=user, groups=set(SITE.groups_of(user)))


def test_form_follows_the_profile():
    assert form_values(SITE.profile("gpu")) == {
        "cores": (1, 8, 2),
        "gpus": (1, 4, 1),
        "memory": "4G",
        "memory_hint": "2G to 8G",
        "walltime": "02:00:00",
        "walltime_hint": "up to 12:00:00",
    }
    ui = launcher("student1")
    assert [value for _, value in ui.profile.options] == ["cpu", "course"]
    ui.profile.value = "course"
    assert (ui.cores.min, ui.cores.max, ui.cores.value, ui.memory.value) == (1, 2, 1, "1G")
    assert ui.gpus.disabled


def test_requested_options_fixed_or_adaptive():
    base = dict(workers=3, cores=1, memory=" 1G ", gpus=0, walltime="1:00:00", minimum=0, maximum=4)
    assert requested_options(adaptive=False, **base) == {
        "cores": 1, "memory": "1G", "gpus": 0, "walltime": "1:00:00", "workers": 3,
    }
    assert requested_options(adaptive=True, **base)["adaptive_max"] == 4


def test_start_scale_stop():
    ui = launcher()
    ui.workers.value = 2
    ui.start()
    cluster = FakeCluster.instances[-1]
    assert cluster.requested["workers"] == 2 and ui.stop_button.disabled is False
    ui._stop.set()  # no background refreshing in this test
    ui.refresh()
    assert (ui.progress.value, ui.progress.max) == (1, 2)
    assert "Job 7 is pending: other jobs have higher priority." in ui.status.value
    assert "/user/student1/proxy/8787/status" in ui.status.value
    ui.adaptive.value = True
    ui.minimum.value, ui.maximum.value = 1, 3
    ui.rescale()
    assert cluster.calls == [("adapt", 1, 3)]
    ui.stop()
    assert cluster.closed and ui.start_button.disabled is False


def test_errors_are_sentences_not_tracebacks():
    ui = launcher()
    ui.memory.value = "lots"
    ui.start()
    assert "Memory &#x27;lots&#x27; is not understood; write it like &#x27;2G&#x27; or &#x27;512M&#x27;." in ui.message.value
    assert "Traceback" not in ui.message.value
    assert ui.cluster is None
    assert error_sentence(AccessRefused("You may not.")) == "You may not."
    assert error_sentence(RuntimeError("sbatch: error: Batch job submission failed\n")) == (
        "Something went wrong: sbatch: error: Batch job submission failed"
    )
    assert error_sentence(OptionsRefused(["A.", "B."])) == "A. B."


def test_status_html_escapes():
    text = status_html(WorkerSummary(1, 0, 0, 0, ("<b>x</b>",)), "")
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>0</b> of <b>1</b>" in text
