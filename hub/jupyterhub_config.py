# JupyterHub configuration of an AI factory: everything comes from the site file.
# Started by `aifactory hub up`; see hub/config.py for what is derived.
import os
from pathlib import Path

from aifactory.hub.config import HubPaths, hub_config, trait_problems
from aifactory.hub.loop_costs import use_wal
from aifactory.spawners.metrics import register_server_counts
from aifactory.site import load_site

c = get_config()  # noqa: F821  (provided by JupyterHub)

site = load_site()
if problems := trait_problems(site):
    raise SystemExit("site file: " + "; ".join(problems))
paths = HubPaths(state=os.environ.get("AIFACTORY_HUB_STATE", HubPaths.state))
token = Path(paths.state, "operator-token").read_text().strip()
secret_file = getattr(site.auth, "client_secret_file", None)
secret = Path(secret_file).read_text().strip() if secret_file else ""
metrics_token_file = Path(paths.state, "metrics-token")
metrics_token = metrics_token_file.read_text().strip() if metrics_token_file.exists() else ""

# The platform's own metrics join JupyterHub's at /hub/metrics.
register_server_counts()

for section, values in hub_config(site, paths, token, secret, metrics_token).items():
    for trait, value in values.items():
        setattr(c[section], trait, value)

# SQLite commits that do not stall JupyterHub's event loop on the disk (hub/loop_costs.py).
use_wal()
