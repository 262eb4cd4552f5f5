"""The notebook launcher: pick a profile and resources, Start / Scale / Stop, and see what Slurm does.

    from aifactory.extensions.dask import launcher
    launcher()

Building the form's values and the status text are pure functions
(`form_values`, `requested_options`, `status_html`); `Launcher` wires them to
ipywidgets and to a cluster factory (SiteCluster unless a test passes another).
"""

from __future__ import annotations

import html
import threading
from typing import Any, Callable

import ipywidgets as w

from aifactory.site import load_site
from aifactory.site.access import AccessRefused, usable_profiles
from aifactory.site.options import OptionsError, ProfileSpec, dask_spec
from aifactory.site.schema import Site

from . import access
from .job_states import WorkerSummary

REFRESH_SECONDS = 2.0


# The spec's fields the widget shows as number boxes, and as text.
_COUNTS = ("workers", "cores", "gpus", "adaptive_min", "adaptive_max")
_TEXTS = ("memory", "walltime")


def form_values(spec: ProfileSpec) -> dict[str, Any]:
    """Bounds and defaults of the form's fields under a profile, from the site's options spec (`dask_spec`)."""
    values: dict[str, Any] = {name: (spec[name].min, spec[name].max, spec[name].default) for name in _COUNTS}
    values.update({name: spec[name].show(spec[name].default) for name in _TEXTS})
    values["hints"] = "; ".join(f"{spec[name].label}: {spec[name].hint}" for name in _TEXTS)
    return values


def requested_options(
    *, workers: int, cores: int, memory: str, gpus: int, walltime: str, adaptive: bool, minimum: int, maximum: int
) -> dict[str, Any]:
    """The form's values as options for SiteCluster (validated there, against the profile)."""
    out: dict[str, Any] = {"cores": cores, "memory": memory.strip(), "gpus": gpus, "walltime": walltime.strip()}
    if adaptive:
        out.update(adaptive_min=minimum, adaptive_max=maximum)
    else:
        out["workers"] = workers
    return out


def status_html(summary: WorkerSummary, dashboard_link: str, extra: list[str] = ()) -> str:
    """The live status: counts, a sentence per missing worker, and the dashboard link."""
    counts = (
        f"<b>{summary.connected}</b> of <b>{summary.target}</b> workers connected; "
        f"Slurm jobs: {summary.pending} pending, {summary.running} running."
    )
    reasons = [*summary.explanations, *extra]
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    why = f"<ul>{items}</ul>" if items else ""
    link = (
        f'<a href="{html.escape(dashboard_link)}" target="_blank">Open the Dask dashboard</a>' if dashboard_link else ""
    )
    return f"<div>{counts}{why}{link}</div>"


def error_sentence(exc: BaseException) -> str:
    """An exception as what the user reads: our refusals as they are, others as one line."""
    if isinstance(exc, (OptionsError, AccessRefused)):
        return str(exc)
    text = str(exc).strip().splitlines()
    detail = text[-1] if text else type(exc).__name__
    return f"Something went wrong: {detail}"


class Launcher:
    """The widget and its cluster. `view` is what the notebook shows."""

    def __init__(
        self,
        site: Site | None = None,
        cluster_factory: Callable[..., Any] | None = None,
        user: str | None = None,
        groups: set[str] | None = None,
    ):
        if cluster_factory is None:
            from .cluster import SiteCluster

            cluster_factory = SiteCluster
        self.site = site or load_site()
        self.cluster_factory = cluster_factory
        self.cluster = None
        self.user = user or access.current_user()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        groups = access.unix_groups(self.user) if groups is None else groups
        profiles = usable_profiles(self.site, groups)
        self.specs = {p.name: dask_spec(self.site, p) for p in profiles}
        self.profile = w.Dropdown(options=[(p.title, p.name) for p in profiles], description="Profile")
        labels = next(iter(self.specs.values())).labels if profiles else {}
        wide = {"description_width": "initial"}
        self.workers = w.BoundedIntText(value=2, max=1024, description=labels.get("workers", ""), style=wide)
        self.cores = w.BoundedIntText(description=labels.get("cores", ""), style=wide)
        self.memory = w.Text(description=labels.get("memory", ""), style=wide)
        self.gpus = w.BoundedIntText(description=labels.get("gpus", ""), style=wide)
        self.walltime = w.Text(description=labels.get("walltime", ""), style=wide)
        self.adaptive = w.Checkbox(value=False, description="Adaptive")
        self.minimum = w.BoundedIntText(value=0, max=1024, description=labels.get("adaptive_min", ""), style=wide)
        self.maximum = w.BoundedIntText(value=4, max=1024, description=labels.get("adaptive_max", ""), style=wide)
        self.hints = w.HTML()
        self.start_button = w.Button(description="Start", button_style="success")
        self.scale_button = w.Button(description="Scale", disabled=True)
        self.stop_button = w.Button(description="Stop", button_style="danger", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Workers")
        self.status = w.HTML("No cluster yet.")
        self.message = w.HTML()

        self.profile.observe(lambda change: self._profile_changed(), names="value")
        self.adaptive.observe(lambda change: self._adaptive_changed(), names="value")
        self.start_button.on_click(lambda b: self.start())
        self.scale_button.on_click(lambda b: self.rescale())
        self.stop_button.on_click(lambda b: self.stop())
        if profiles:
            self._profile_changed()
        else:
            self.start_button.disabled = True
            self.message.value = self._say(f"There is no Dask profile that {self.user} may use.")
        self._adaptive_changed()
        self.view = w.VBox(
            [
                self.profile,
                w.HBox([self.cores, self.memory, self.gpus]),
                w.HBox([self.walltime, self.hints]),
                w.HBox([self.workers, self.adaptive, self.minimum, self.maximum]),
                w.HBox([self.start_button, self.scale_button, self.stop_button]),
                self.progress,
                self.status,
                self.message,
            ]
        )

    # ---- form ----

    def _profile_changed(self) -> None:
        values = form_values(self.specs[self.profile.value])
        boxes = ((self.cores, "cores"), (self.gpus, "gpus"), (self.workers, "workers"),
                 (self.minimum, "adaptive_min"), (self.maximum, "adaptive_max"))
        for box, name in boxes:
            low, high, default = values[name]
            # Resources start at the profile's defaults; worker counts keep what was typed, within the bounds.
            value = default if name in ("cores", "gpus") else min(max(box.value, low), high)
            box.min, box.max = 0, max(high, box.max)  # widen first so the new bounds never clash
            box.min, box.max, box.value = low, high, value
        self.cores.disabled = values["cores"][1] == 0
        self.gpus.disabled = values["gpus"][1] == 0
        self.memory.value = values["memory"]
        self.walltime.value = values["walltime"]
        self.hints.value = html.escape(values["hints"])

    def _adaptive_changed(self) -> None:
        self.workers.disabled = self.adaptive.value
        self.minimum.disabled = self.maximum.disabled = not self.adaptive.value

    def _requested(self) -> dict[str, Any]:
        return requested_options(
            workers=self.workers.value,
            cores=self.cores.value,
            memory=self.memory.value,
            gpus=self.gpus.value,
            walltime=self.walltime.value,
            adaptive=self.adaptive.value,
            minimum=self.minimum.value,
            maximum=self.maximum.value,
        )

    @staticmethod
    def _say(sentence: str, error: bool = True) -> str:
        colour = "#b00020" if error else "inherit"
        return f'<span style="color:{colour}">{html.escape(sentence)}</span>'

    # ---- actions ----

    def start(self) -> None:
        self.message.value = ""
        try:
            self.cluster = self.cluster_factory(self.profile.value, **self._requested())
        except Exception as exc:  # shown as a sentence, never a traceback
            self.message.value = self._say(error_sentence(exc))
            return
        self.start_button.disabled = True
        self.profile.disabled = self.cores.disabled = self.memory.disabled = self.gpus.disabled = True
        self.walltime.disabled = True
        self.scale_button.disabled = self.stop_button.disabled = False
        self.message.value = self._say(f"Started; Slurm job name {self.cluster.slurm_job_name}.", error=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True)
        self._thread.start()

    def rescale(self) -> None:
        if self.cluster is None:
            return
        self.message.value = ""
        try:
            if hasattr(self.cluster, "resume"):
                self.cluster.resume()
            if self.adaptive.value:
                self.cluster.adapt(minimum=self.minimum.value, maximum=self.maximum.value)
            else:
                if getattr(self.cluster, "_adaptive", None) is not None:
                    self.cluster._adaptive.stop()
                self.cluster.scale(self.workers.value)
        except Exception as exc:
            self.message.value = self._say(error_sentence(exc))

    def stop(self) -> None:
        self._stop.set()
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            try:
                cluster.close()
            except Exception as exc:
                self.message.value = self._say(error_sentence(exc))
        self.start_button.disabled = False
        self.profile.disabled = self.memory.disabled = self.walltime.disabled = False
        self._profile_changed()
        self.scale_button.disabled = self.stop_button.disabled = True
        self.progress.value = 0
        self.status.value = "Stopped; the cluster's Slurm jobs were cancelled."

    # ---- live status ----

    def refresh(self) -> None:
        cluster = self.cluster
        if cluster is None:
            return
        try:
            summary = cluster.worker_status()
            extra = cluster.notes()
        except Exception as exc:
            self.status.value = self._say(error_sentence(exc))
            return
        self.progress.max = max(1, summary.target)
        self.progress.value = min(summary.connected, self.progress.max)
        self.progress.bar_style = "success" if summary.target and summary.connected >= summary.target else "info"
        self.status.value = status_html(summary, cluster.dashboard_link, extra)

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(REFRESH_SECONDS)
