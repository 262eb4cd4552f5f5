"""The site configuration: one YAML file, the single source of truth for a centre."""

from .checks import Problem, check_site
from .load import DEMO_SITE, INSTALLED_SITE, SiteError, load_site, load_site_cached, parse_site, problems_of, site_path
from .schema import Site

__all__ = [
    "Site",
    "Problem",
    "SiteError",
    "check_site",
    "load_site",
    "load_site_cached",
    "parse_site",
    "problems_of",
    "site_path",
    "DEMO_SITE",
    "INSTALLED_SITE",
]
