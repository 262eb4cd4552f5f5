"""The launcher widget, driven in-process with a fake cluster (no Slurm)."""

from aifactory.extensions.dask.job_states import WorkerSummary
from aifactory.extensions.dask.options import choose_options
from aifactory.extensions.dask.widget import Launcher, error_sentence, form_values, requested_options, status_html
from aifactory.site import load_site
from aifactory.site.access import AccessRefused
from aifactory.site.load import DEMO_SITE
from aifactory.site.options import OptionsError, Problem, dask_spec

SITE = load_site(DEMO_SITE)


class FakeCluster:
    """Records what the widget asks; checks options like SiteCluster does."""

    instances: list["FakeCluster"] = []

    def __init__(self, profile, **requested):
        self.options = choose_options(dask_spec(SITE, SITE.profile(profile)), requested)
        self.profile = profile
        self.requested = requested
        self.slurm_job_name = "dask-cpu-fake"
        self.calls: list[tuple] = []
        self.closed = False
        self.replaced_notes: list[str] = []
        self.dashboard_link = "/user/student1/proxy/8787/status"
        FakeCluster.instances.append(self)

    def scale(self, n):
        self.calls.append(("scale", n))

    def adapt(self, minimum, maximum):
        self.calls.append(("adapt", minimum, maximum))

    def notes(self):
        return self.replaced_notes

    def worker_status(self):
        return WorkerSummary(2, 1, 1, 1, ("Job 7 is pending: other jobs have higher priority.",))

    def close(self):
        self.closed = True


def launcher(user="student1"):
    return Launcher(site=SITE, cluster_factory=FakeCluster, user=user, groups=set(SITE.groups_of(user)))


def test_form_follows_the_profiles_spec():
    assert form_values(dask_spec(SITE, SITE.profile("gpu"))) == {
        "workers": (0, 8, 0),
        "cores": (1, 8, 2),
        "gpus": (1, 4, 1),
        "adaptive_min": (0, 8, None),
        "adaptive_max": (1, 8, None),
        "memory": "2G",
        "walltime": "02:00:00",
        "hints": "Memory per worker: 2G to 4G, e.g. 2G or 1536M; "
                 "Walltime per worker: hours:minutes:seconds, up to 12:00:00",
    }
    ui = launcher("student1")
    assert [value for _, value in ui.profile.options] == ["cpu", "course", "course-pytorch"]
    assert (ui.cores.description, ui.memory.description) == ("Cores per worker", "Memory per worker")
    ui.profile.value = "course"
    assert (ui.cores.min, ui.cores.max, ui.cores.value, ui.memory.value) == (1, 2, 1, "1G")
    assert (ui.workers.max, ui.maximum.max) == (form_values(ui.specs["course"])["workers"][1],) * 2
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
    cluster.replaced_notes.append("Job 8 stopped: the node running it failed; a new job replaces worker 1.")
    ui.refresh()
    assert "Job 8 stopped: the node running it failed; a new job replaces worker 1." in ui.status.value
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
    assert "Memory per worker: must be like &#x27;2G&#x27; or &#x27;1536M&#x27;; allowed 1G to 5G." in ui.message.value
    assert "Traceback" not in ui.message.value
    assert ui.cluster is None
    assert error_sentence(AccessRefused("You may not.")) == "You may not."
    assert error_sentence(RuntimeError("sbatch: error: Batch job submission failed\n")) == (
        "Something went wrong: sbatch: error: Batch job submission failed"
    )
    assert error_sentence(OptionsError([Problem("cores", "a"), Problem("gpus", "b")], {"cores": "Cores"})) == (
        "Cores: a. gpus: b.")


def test_status_html_escapes():
    text = status_html(WorkerSummary(1, 0, 0, 0, ("<b>x</b>",)), "")
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>0</b> of <b>1</b>" in text
