"""The site configuration: one YAML file, the single source of truth for a centre.

The names below load their module on first use: a job's launcher that only needs `files`, or a
student's `aifactory exchange`, does not pay for the schema (pydantic) it never touches.
"""

from importlib import import_module

_EXPORTS = {
    "Site": "schema",
    "Problem": "checks",
    "check_site": "checks",
    **dict.fromkeys(("SiteError", "load_site", "load_site_cached", "parse_site", "problems_of", "site_path",
                     "DEMO_SITE", "INSTALLED_SITE"), "load"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
