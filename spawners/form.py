"""The spawn form: one card per profile the user may start, built from the site and the cluster's state.

A pure function of the user's offers, the live partition state, the projects'
allocation use, the values the user sent last and the error they got. It is
HTML inside JupyterHub's spawn page (`hub/templates/spawn.html` styles it).
Every value shown is escaped; what the browser sends back is checked again by
`options.validate` on the hub.
"""

from __future__ import annotations

import json
from html import escape
from typing import Mapping

from aifactory.site.units import format_memory, format_walltime

from .cluster_state import AllocationUse, PartitionState
from .options import ProfileOffer

# Fields with their own place in the form; an error about any other name is shown on top.
_FIELD_IDS = ("profile", "account", "cpus", "memory", "gpus", "walltime", "environment", "reservation")


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def partition_words(offer: ProfileOffer, state: PartitionState | None) -> tuple[str, bool | None]:
    """('12 of 16 CPUs idle, ...', fits now?) for a card; (why unknown, None) without state."""
    if state is None:
        return "live state unknown: Slurm did not answer", None
    if state.nodes == 0:
        return "no node of this partition is up", False
    parts = [f"{state.idle_cpus} of {state.cpus} CPUs idle", f"{format_memory(state.free_memory_mib)} memory free"]
    if offer.gpu_type:
        parts.append(f"{state.free_gpus} of {state.gpus} {offer.gpu_type.upper()} GPUs free")
    parts.append(f"{state.idle_nodes} of {state.nodes} node{'s' if state.nodes != 1 else ''} idle")
    fits = (state.idle_cpus >= offer.cpus.default and state.free_memory_mib >= offer.memory_mib.default
            and (not offer.gpu_type or state.free_gpus >= offer.gpus.default))
    return ", ".join(parts), fits


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


def _error(field: str, error: tuple[str, str] | None) -> str:
    if not error or error[0] != field:
        return ""
    return f'<div class="aif-error" id="error-{field}" role="alert">{escape(error[1])}</div>'


def _card(offer: ProfileOffer, checked: bool, state: PartitionState | None) -> str:
    live, fits = partition_words(offer, state)
    badge = {True: '<span class="badge bg-success">starts now</span>',
             False: '<span class="badge bg-warning text-dark">will queue</span>', None: ""}[fits]
    gpus = f", {offer.gpus.min}-{offer.gpus.max} {escape(offer.gpu_type or '')} GPUs" if offer.gpus.max else ""
    ranges = {
        "cpus": [offer.cpus.min, offer.cpus.max, offer.cpus.default],
        "memory": [format_memory(offer.memory_mib.min), format_memory(offer.memory_mib.max),
                   format_memory(offer.memory_mib.default)],
        "gpus": [offer.gpus.min, offer.gpus.max, offer.gpus.default],
        "walltime": [format_walltime(offer.walltime_minutes.min), format_walltime(offer.walltime_minutes.max),
                     format_walltime(offer.walltime_minutes.default)],
        "gpu_type": offer.gpu_type or "",
    }
    return (
        f'<label class="aif-card card{" aif-selected" if checked else ""}" data-ranges="{escape(json.dumps(ranges))}">'
        f'<input type="radio" name="profile" value="{escape(offer.name)}"{" checked" if checked else ""}>'
        f'<div class="card-body"><div class="aif-card-title"><strong>{escape(offer.title)}</strong> {badge}</div>'
        f'<div class="aif-card-text">{escape(offer.description)}</div>'
        f'<div class="aif-card-meta">Partition <code>{escape(offer.partition)}</code>: {escape(live)}</div>'
        f'<div class="aif-card-meta">CPUs {offer.cpus.min}-{offer.cpus.max}, memory '
        f'{format_memory(offer.memory_mib.min)}-{format_memory(offer.memory_mib.max)}{gpus}, '
        f'up to {format_walltime(offer.walltime_minutes.max)}</div></div></label>'
    )


def _field(name: str, label: str, control: str, hint: str, error: tuple[str, str] | None) -> str:
    return (f'<div class="aif-field mb-2" id="field-{name}"><label class="form-label" for="input-{name}">'
            f'{escape(label)}</label>{control}<div class="form-text" id="hint-{name}">{escape(hint)}</div>'
            f'{_error(name, error)}</div>')


def _input(name: str, value: str, kind: str = "text", extra: str = "") -> str:
    return (f'<input id="input-{name}" name="{name}" type="{kind}" class="form-control" '
            f'value="{escape(value)}"{extra}>')


def _options(values: list[tuple[str, str]], selected: str) -> str:
    return "".join(f'<option value="{escape(v)}"{" selected" if v == selected else ""}>{escape(text)}</option>'
                   for v, text in values)


def options_form_html(
    offers: list[ProfileOffer],
    partitions: Mapping[str, PartitionState] | None = None,
    allocations: Mapping[str, AllocationUse] | None = None,
    values: Mapping[str, str] | None = None,
    error: tuple[str, str] | None = None,
) -> str:
    """The form for these offers; `values` and `error` (field, message) come from a refused attempt."""
    if not offers:
        return ('<p class="alert alert-warning">No profile is open to you: you need a project (Slurm account) '
                'and a group with access. Ask your centre or your course trainer.</p>')
    values = values or {}
    names = [o.name for o in offers]
    chosen = offers[names.index(values["profile"])] if values.get("profile") in names else offers[0]
    cards = "".join(_card(o, o is chosen, (partitions or {}).get(o.partition) if partitions is not None else None)
                    for o in offers)
    top = ""
    if error and error[0] not in _FIELD_IDS:
        top = f'<div class="aif-error alert alert-danger" id="error-{escape(error[0])}">{escape(error[1])}</div>'
    accounts = _options([(a, allocation_words(a, (allocations or {}).get(a))) for a in chosen.accounts],
                        values.get("account", ""))
    environments = _options([("", "profile default"), *((e, e) for e in chosen.environments)],
                            values.get("environment", ""))
    gpu_hidden = "" if chosen.gpus.max else ' style="display:none"'
    fields = [
        _field("account", "Project (Slurm account)",
               f'<select id="input-account" name="account" class="form-select">{accounts}</select>',
               "Core-hours are charged to this project.", error),
        _field("cpus", "CPUs", _input("cpus", values.get("cpus", ""), "number",
                                      f' min="{chosen.cpus.min}" max="{chosen.cpus.max}" '
                                      f'placeholder="{chosen.cpus.default}"'),
               f"{chosen.cpus.min} to {chosen.cpus.max}; empty means {chosen.cpus.default}", error),
        _field("memory", "Memory", _input("memory", values.get("memory", ""),
                                          extra=f' placeholder="{format_memory(chosen.memory_mib.default)}"'),
               f"{format_memory(chosen.memory_mib.min)} to {format_memory(chosen.memory_mib.max)}, e.g. 2G or 1536M",
               error),
        f'<div id="gpu-fields"{gpu_hidden}>' + _field(
            "gpus", f"GPUs ({chosen.gpu_type or 'none'})",
            _input("gpus", values.get("gpus", ""), "number",
                   f' min="{chosen.gpus.min}" max="{chosen.gpus.max}" placeholder="{chosen.gpus.default}"'),
            f"{chosen.gpus.min} to {chosen.gpus.max} {chosen.gpu_type or ''} GPUs", error) + "</div>",
        _field("walltime", "Walltime", _input("walltime", values.get("walltime", ""),
                                              extra=f' placeholder="{format_walltime(chosen.walltime_minutes.default)}"'),
               f"hours:minutes:seconds, up to {format_walltime(chosen.walltime_minutes.max)}", error),
        _field("environment", "Environment",
               f'<select id="input-environment" name="environment" class="form-select">{environments}</select>',
               "The software your server starts with.", error),
    ]
    if chosen.reservations:
        reservations = _options([("", "none"), *((r, r) for r in chosen.reservations)], values.get("reservation", ""))
        fields.append(_field("reservation", "Reservation",
                             f'<select id="input-reservation" name="reservation" class="form-select">'
                             f'{reservations}</select>', "Course and event reservations open to you.", error))
    return "\n".join([
        top,
        f'<fieldset class="aif-profiles" id="field-profile"><legend>Profile</legend>{cards}'
        f'{_error("profile", error)}</fieldset>',
        '<fieldset class="aif-resources"><legend>Resources</legend>', *fields, "</fieldset>",
        _SCRIPT,
    ])


# Keeps the hints, limits and GPU field in step with the chosen card; the hub checks everything again.
_SCRIPT = """<script>
(function () {
  function pick(card) {
    document.querySelectorAll('.aif-card').forEach(function (c) { c.classList.toggle('aif-selected', c === card); });
    var r = JSON.parse(card.dataset.ranges);
    function set(name, range, hint) {
      var input = document.getElementById('input-' + name);
      if (!input) return;
      if (input.type === 'number') { input.min = range[0]; input.max = range[1]; }
      input.placeholder = range[2];
      document.getElementById('hint-' + name).textContent = hint;
    }
    set('cpus', r.cpus, r.cpus[0] + ' to ' + r.cpus[1] + '; empty means ' + r.cpus[2]);
    set('memory', r.memory, r.memory[0] + ' to ' + r.memory[1] + ', e.g. 2G or 1536M');
    set('walltime', r.walltime, 'hours:minutes:seconds, up to ' + r.walltime[1]);
    set('gpus', r.gpus, r.gpus[0] + ' to ' + r.gpus[1] + ' ' + r.gpu_type + ' GPUs');
    document.getElementById('gpu-fields').style.display = r.gpus[1] > 0 ? '' : 'none';
    if (r.gpus[1] === 0) document.getElementById('input-gpus').value = '';
  }
  document.querySelectorAll('.aif-card input[name=profile]').forEach(function (radio) {
    radio.addEventListener('change', function () { pick(radio.closest('.aif-card')); });
  });
})();
</script>"""
