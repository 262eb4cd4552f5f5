"""The home page's session cards: each of a user's servers, in words ready for hub/templates/home.html.

`build_card` is pure: from what the hub knows of one server (its saved options, its job's state,
the shared poller's view of the job, the walltime end when known) to a `Card` whose every field
is text the template shows as it is. `cards_of` is the one adapter that reads JupyterHub's user
object (duck-typed: a running server's Spawner or a stopped server's ORM row); hub/config.py
hands it to the templates as `session_cards`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import quote, urlencode

from aifactory.site import load_site_cached
from aifactory.site.options import OptionsError, server_spec
from aifactory.site.options import validate as validate_spec
from aifactory.site.schema import Site
from aifactory.slurm.states import reason_words
from aifactory.spawners.job_state import ServerJob, from_state
from aifactory.spawners.poller import JobView

log = logging.getLogger("aifactory.hub.session_cards")

# Amounts the Extend form offers (minutes, words); the hub's walltime API refuses what a profile,
# the project's allocation or the partition does not allow, and the card shows why.
EXTEND_CHOICES: tuple[tuple[int, str], ...] = ((30, "30 min"), (60, "1 h"), (120, "2 h"), (240, "4 h"))
# Options a server's user_options may hold that the spawn form has fields for (the prefill link).
PREFILL_FIELDS = ("profile", "partition", "account", "cpus", "memory", "gpus", "gpu_type", "walltime",
                  "reservation", "environment")


@dataclass(frozen=True)
class Card:
    """One server on the home page; every text field is shown as it is."""

    name: str               # the server's name; '' for the default server
    label: str              # 'Default server' or the name
    slug: str               # for element ids
    state: str              # queued | starting | running | stopping | stopped
    state_text: str         # 'Queued', 'Starting', 'Running', 'Stopping', 'Stopped'
    detail: str             # why queued / where it runs / why it stopped, in words
    profile: str            # the profile's title
    partition: str
    node: str               # where it runs ('' until Slurm has placed it)
    cpus: str
    memory: str
    gpus: str               # 'none' or '2 × mi250x'
    walltime: str           # what was asked for
    job_id: str
    final_state: str        # Slurm's final state of the last job (CANCELLED, TIMEOUT, NODE_FAIL...), '' if none
    ends_at: float | None   # epoch seconds of the walltime's end, for the live countdown
    time_left: str          # at render time; the page's script keeps it current
    open_url: str
    spawn_url: str          # the spawn page (GET) and the start-again form's target (POST)
    walltime_url: str       # the hub's walltime extension API for this server
    prefill: str            # the spawn form's fields as a URL fragment ('profile=cpu&cpus=2')
    options: tuple[tuple[str, str], ...]  # what start-again posts
    can_open: bool
    can_stop: bool
    can_extend: bool
    can_start_again: bool
    can_delete: bool        # a stopped named server may be forgotten

    @property
    def extend_choices(self) -> tuple[tuple[int, str], ...]:
        return EXTEND_CHOICES


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 22nd."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def duration_words(seconds: float) -> str:
    """'2 h 5 min', '42 min', 'less than a minute'; the page's countdown writes the same words."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def final_state_of(job: ServerJob) -> str:
    """Slurm's final state of the last job: saved by the poller, or the '[STATE]' that ends its stop reason."""
    if job.job_status:
        return job.job_status
    reason = job.stop_reason.rstrip()
    if reason.endswith("]") and "[" in reason:
        word = reason[reason.rindex("[") + 1:-1]
        return word if word.replace("_", "").isalpha() and word.isupper() else ""
    return ""


def queued_detail(view: JobView, now: datetime) -> str:
    """'waiting for resources: ...; 3rd of 5 in standard; Slurm expects it to start at 14:05'."""
    parts = [reason_words(view.reason or "None")]
    if view.position and view.pending_total:
        parts.append(f"{ordinal(view.position)} of {view.pending_total} in {view.partition}")
    estimate = view.start_estimate
    if estimate and estimate.tzinfo is None:  # squeue's times are the controller's local time
        now = now.astimezone().replace(tzinfo=None)
    if estimate and estimate > now:
        parts.append(f"Slurm expects it to start at {view.start_estimate.strftime('%H:%M')}")
    return "; ".join(parts)


def resources(site: Site | None, options: Mapping[str, Any]) -> dict[str, str]:
    """The server's profile title, partition, CPUs, memory, GPUs and walltime as the form would show them:
    the saved options with the profile's defaults for the fields left empty; the raw options when the site
    no longer has the profile or no longer allows them ("valid" is then empty)."""
    raw = {k: str(v) for k, v in options.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}
    shown = {"valid": "", "profile": raw.get("profile", ""), "partition": raw.get("partition", ""), "cpus": raw.get("cpus", ""),
             "memory": raw.get("memory", ""), "gpus": raw.get("gpus", "0") or "0", "gpu_type": raw.get("gpu_type", ""),
             "walltime": raw.get("walltime", "")}
    profile = next((p for p in site.profiles if p.name == raw.get("profile")), None) if site else None
    if site is None or profile is None:
        return shown
    spec = server_spec(site, profile, [raw["account"]] if raw.get("account") else ["-"],
                       [raw["reservation"]] if raw.get("reservation") else [])
    shown["profile"] = profile.title
    try:
        values = validate_spec(spec, {k: v for k, v in raw.items() if k != "profile"}, also=("profile",))
    except OptionsError:
        return shown
    for name in ("partition", "cpus", "memory", "gpus", "walltime"):
        shown[name] = spec[name].show(values[name])
    shown["valid"] = "yes"
    shown["gpu_type"] = spec.gpu_type or "" if values["gpus"] else ""
    return shown


def build_card(*, user: str, name: str, options: Mapping[str, Any], job: ServerJob, view: JobView | None,
               ready: bool, pending: str | None, ends_at: datetime | None, site: Site | None,
               base_url: str, server_url: str, now: datetime) -> Card:
    """One server's card. `pending` is JupyterHub's pending action ('spawn', 'stop' or None), `view` the
    poller's latest view of the job (None when the hub does not follow it), `base_url` the hub's ('/hub/')."""
    active = ready or pending is not None
    if pending == "stop":
        state, detail = "stopping", "Cancelling its Slurm job"
    elif ready:
        state = "running"
        node = (view.node if view and view.node else "") or job.node
        detail = f"Running on {node}" if node else "Running"
    elif active:
        if view is not None and view.kind == "pending":
            state, detail = "queued", queued_detail(view, now)
        elif view is not None and view.kind == "running":
            state, detail = "starting", f"Slurm started it on {view.node}; the server is starting"
        else:
            state = "starting"
            detail = "Submitted to Slurm" if job.job_id else "Checking your options and submitting the job"
    else:
        state = "stopped"
        detail = job.stop_reason or ("Not started yet" if not options else "Not running")
    shown = resources(site, options)
    node = ""
    if state in ("running", "starting"):
        node = (view.node if view and view.node else "") or job.node
    partition = (view.partition if view and view.partition else "") or shown["partition"]
    gpus = "none" if shown["gpus"] in ("", "0") else " × ".join(x for x in (shown["gpus"], shown["gpu_type"]) if x)
    if ends_at is not None and ends_at.tzinfo is None:  # Slurm's times are the controller's local time
        ends_at = ends_at.astimezone()
    left = (ends_at - now).total_seconds() if ends_at and state == "running" else None
    escaped = quote(name, safe="")
    server_path = f"{quote(user, safe='')}/{escaped}" if name else quote(user, safe="")
    prefill = tuple((k, str(options[k])) for k in PREFILL_FIELDS
                    if isinstance(options.get(k), (str, int)) and str(options[k]) != "")
    return Card(
        name=name, label=name or "Default server", slug=name or "default",
        state=state, state_text=state.capitalize(), detail=detail,
        profile=shown["profile"] or "(no options saved)", partition=partition, node=node,
        cpus=shown["cpus"], memory=shown["memory"], gpus=gpus, walltime=shown["walltime"],
        job_id=job.job_id, final_state=final_state_of(job) if state == "stopped" else "",
        ends_at=ends_at.timestamp() if ends_at and state == "running" else None,
        time_left=(duration_words(max(left, 0.0)) if left is not None else ""),
        open_url=server_url, spawn_url=f"{base_url}spawn/{server_path}",
        walltime_url=(f"{base_url}api/aifactory/users/{server_path.replace('/', '/servers/', 1)}/walltime" if name
                      else f"{base_url}api/aifactory/users/{server_path}/server/walltime"),
        prefill=urlencode(prefill), options=prefill,
        can_open=ready and pending is None, can_stop=active and pending != "stop", can_extend=state == "running",
        can_start_again=not active and bool(prefill) and bool(shown["valid"]), can_delete=not active and bool(name),
    )


def _spawner_card(user, spawner, site: Site | None, base_url: str, now: datetime) -> Card:
    """A card from a running server's Spawner or a stopped server's ORM row (JupyterHub yields either)."""
    name = spawner.name or ""
    if hasattr(spawner, "get_state"):  # the Spawner object (the ORM row has no methods of a spawner)
        job = getattr(spawner, "job", None)
        job = job if isinstance(job, ServerJob) else from_state(spawner.get_state() or {})
        view = None
        poller = getattr(spawner, "poller", None) if job.job_id else None
        if poller is not None:
            view = poller.view(job.job_id)
        ready, pending = bool(spawner.ready), spawner.pending
        ends_at = getattr(spawner, "ends_at", None)
    else:  # orm.Spawner: not running
        job, view, ready, pending, ends_at = from_state(spawner.state or {}), None, False, None, None
    return build_card(user=user.name, name=name, options=spawner.user_options or {}, job=job, view=view,
                      ready=ready, pending=pending, ends_at=ends_at, site=site, base_url=base_url,
                      server_url=user.server_url(name), now=now)


def cards_of(user, site: Site | None = None) -> Callable[[str], list[Card]]:
    """`session_cards` for the templates: called with the hub's base URL on the home page only, so other
    pages pay nothing. The default server first, then the named ones by name."""
    def cards(base_url: str) -> list[Card]:
        if user is None:
            return []
        try:
            where = site or load_site_cached(None)
        except Exception:  # a card without the profile's title beats no home page
            where = None
        now = datetime.now(timezone.utc)
        spawners = sorted(user.all_spawners(), key=lambda s: (bool(s.name), s.name or ""))
        return [_safe_card(user, s, where, base_url, now) for s in spawners]
    return cards


def _safe_card(user, spawner, site: Site | None, base_url: str, now: datetime) -> Card:
    """A server whose details cannot be read still gets a card (with its name and Stop), never a broken page."""
    try:
        return _spawner_card(user, spawner, site, base_url, now)
    except Exception:
        log.exception("Session card of %s:%s", user.name, spawner.name)
        ready, pending = bool(getattr(spawner, "ready", False)), getattr(spawner, "pending", None)
        card = build_card(user=user.name, name=spawner.name or "", options={}, job=ServerJob(), view=None,
                          ready=ready, pending=pending, ends_at=None, site=None, base_url=base_url,
                          server_url=user.server_url(spawner.name or ""), now=now)
        return replace(card, detail="The hub could not read this server's details; see the hub's log")


__all__ = ["Card", "EXTEND_CHOICES", "build_card", "cards_of", "duration_words", "ordinal"]
