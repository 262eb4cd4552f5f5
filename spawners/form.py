"""A plain HTML options form from the user's offers (the hub's spawn page may replace it)."""

from __future__ import annotations

from html import escape

from aifactory.hub.site.units import format_memory, format_walltime

from .options import ProfileOffer


def _select(name: str, values: tuple[str, ...] | list[str], label: str) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return f'<label>{escape(label)} <select name="{name}" class="form-control">{options}</select></label>'


def options_form_html(offers: list[ProfileOffer]) -> str:
    """One radio button per profile with its ranges; resource fields left empty take the profile's defaults."""
    if not offers:
        return "<p>No profile is open to you: you need a project (Slurm account) and a group with access.</p>"
    rows = []
    for index, o in enumerate(offers):
        gpus = f", GPUs {o.gpus.min}-{o.gpus.max} {escape(o.gpu_type or '')}" if o.gpus.max else ""
        rows.append(
            f'<div class="radio"><label><input type="radio" name="profile" value="{escape(o.name)}"'
            f'{" checked" if index == 0 else ""}> <strong>{escape(o.title)}</strong> ({escape(o.partition)}) '
            f'- CPUs {o.cpus.min}-{o.cpus.max}, memory {format_memory(o.memory_mib.min)}-'
            f'{format_memory(o.memory_mib.max)}{gpus}, walltime up to {format_walltime(o.walltime_minutes.max)}'
            f'<br><small>{escape(o.description)}</small></label></div>'
        )
    first = offers[0]
    environments = sorted({e for o in offers for e in o.environments})
    fields = [
        _select("account", first.accounts, "Project"),
        '<label>CPUs <input name="cpus" type="number" min="1" placeholder="profile default" class="form-control"></label>',
        '<label>Memory <input name="memory" placeholder="e.g. 2G" class="form-control"></label>',
        '<label>GPUs <input name="gpus" type="number" min="0" placeholder="profile default" class="form-control"></label>',
        '<label>Walltime <input name="walltime" placeholder="e.g. 2:00:00" class="form-control"></label>',
        '<label>Environment <select name="environment" class="form-control"><option value="">profile default</option>'
        + "".join(f'<option value="{escape(e)}">{escape(e)}</option>' for e in environments) + "</select></label>",
    ]
    if first.reservations:
        fields.append('<label>Reservation <select name="reservation" class="form-control"><option value="">none</option>'
                      + "".join(f'<option value="{escape(r)}">{escape(r)}</option>' for r in first.reservations)
                      + "</select></label>")
    return "\n".join(["<fieldset>", *rows, "</fieldset>", "<fieldset>", *fields, "</fieldset>"])
