"""The spawn form: one card per profile the user may start, built from the site and the cluster's state.

A pure function of the user's offers (the site's options spec), the live
partition state, the projects' allocation use, the values the user sent last and
the problems they got, rendered from `templates/options_form.html` (Jinja, every
value escaped). It is HTML inside JupyterHub's spawn page
(`hub/templates/spawn.html` styles it); what the browser sends back is checked
again by `options.validate` on the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2

from aifactory.site.options import Problem, ProfileSpec
from aifactory.site.units import format_memory

from .cluster_state import AllocationUse, PartitionState

# The spec's fields the form shows, in order; the others (partition, gpu_type) follow the profile.
FORM_FIELDS = ("account", "cpus", "memory", "gpus", "walltime", "environment", "reservation")
# Fields whose limits, hints and labels change with the chosen card.
_CARD_FIELDS = ("cpus", "memory", "gpus", "walltime")
# What an empty choice means, where a choice may be left empty.
_EMPTY = {"environment": "profile default", "reservation": "none"}

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def partition_words(offer: ProfileSpec, state: PartitionState | None) -> tuple[str, bool | None]:
    """('2 of 2 nodes idle · 14 of 16 CPUs free · ... · 1 node down', fits now?) for a card, counted
    per node by sinfo; fits when one node has the profile's defaults free. (Why unknown, None) without state."""
    if state is None:
        return "live state unknown: Slurm did not answer", None
    unavailable = [f"{_count(n, 'node')} {word}"
                   for n, word in ((state.down_nodes, "down"), (state.drained_nodes, "drained")) if n]
    if state.nodes == 0:
        return " · ".join(["no node of this partition is up", *unavailable]), False
    parts = [f"{state.idle_nodes} of {_count(state.nodes, 'node')} idle",
             f"{state.idle_cpus} of {state.cpus} CPUs free", f"{format_memory(state.free_memory_mib)} memory free"]
    if offer.gpu_type:
        parts.append(f"{state.free_gpus} of {state.gpus} {offer.gpu_type.upper()} GPUs free")
    fits = state.fits(offer["cpus"].default, offer["memory"].default, offer["gpus"].default if offer.gpu_type else 0)
    return " · ".join([*parts, *unavailable]), fits


def allocation_words(account: str, use: AllocationUse | None) -> str:
    """'project_x: 12.5 of 20,000 core-hours used (19,988 left)'; just the name when accounting is silent."""
    if use is None:
        return account
    pieces = []
    for used, allocated, unit in ((use.cpu_hours_used, use.cpu_hours, "core-hours"),
                                  (use.gpu_hours_used, use.gpu_hours, "GPU-hours")):
        if allocated is not None:
            pieces.append(f"{_hours(used)} of {allocated:,} {unit} used ({_hours(max(allocated - used, 0))} left)")
        elif used:
            pieces.append(f"{_hours(used)} {unit} used")
    return f"{account}: {'; '.join(pieces)}" if pieces else account


def _card_fields(offer: ProfileSpec) -> dict[str, dict[str, Any]]:
    """What the form's script copies onto the resource fields when this card is chosen."""
    return {f.name: {"min": f.min, "max": f.max, "placeholder": f.show(f.default), "hint": f.hint, "label": f.label,
                     "hidden": f.kind == "count" and f.max == 0}
            for f in (offer[name] for name in _CARD_FIELDS)}


def _ranges(offer: ProfileSpec) -> str:
    """'CPUs 1-4, memory 1G-4G, 1-2 a100 GPUs, up to 08:00:00' for a card."""
    cpus, memory, gpus, walltime = (offer[name] for name in _CARD_FIELDS)
    shown = f", {gpus.min}-{gpus.max} {offer.gpu_type or ''} GPUs" if gpus.max else ""
    return (f"CPUs {cpus.min}-{cpus.max}, memory {memory.show(memory.min)}-{memory.show(memory.max)}{shown}, "
            f"up to {walltime.show(walltime.max)}")


def options_form_html(
    offers: list[ProfileSpec],
    partitions: Mapping[str, PartitionState] | None = None,
    allocations: Mapping[str, AllocationUse] | None = None,
    values: Mapping[str, str] | None = None,
    errors: Sequence[Problem] = (),
) -> str:
    """The form for these offers; `values` and `errors` ((field, message) each) come from a refused attempt."""
    template = _TEMPLATES.get_template("options_form.html")
    if not offers:
        return template.render(cards=[])
    values = values or {}
    names = [o.profile for o in offers]
    chosen = offers[names.index(values["profile"])] if values.get("profile") in names else offers[0]
    cards = []
    for offer in offers:
        live, fits = partition_words(offer, None if partitions is None else partitions.get(offer.partition))
        cards.append({"spec": offer, "checked": offer is chosen, "live": live, "fits": fits,
                      "ranges": _ranges(offer), "fields": _card_fields(offer)})
    fields = [chosen[name] for name in FORM_FIELDS if name != "reservation" or chosen[name].choices]
    texts = {("account", a): allocation_words(a, (allocations or {}).get(a)) for a in chosen["account"].choices}
    shown = {"profile", *FORM_FIELDS}
    return template.render(
        cards=cards, fields=fields, values=values, empty=_EMPTY, texts=texts,
        errors={field: message for field, message in errors if field in shown},
        top=[Problem(field, message) for field, message in errors if field not in shown],
    )
