# The hub in Kubernetes (rendered by the aifactory Helm chart into a ConfigMap).
#
# First exactly what the local hub runs: aifactory/hub/jupyterhub_config.py with the site
# file of the ConfigMap ($AIFACTORY_SITE) and the state volume ($AIFACTORY_HUB_STATE).
# Then only what Kubernetes changes, each from an environment variable the chart sets:
# where the hub listens and is reached, the proxy in its own pod, the database, and how
# the spawner reaches Slurm (spawners/remote.py).
import os
import shutil
from importlib.resources import files
from urllib.parse import quote

load_subconfig(str(files("aifactory.hub") / "jupyterhub_config.py"))  # noqa: F821 (traitlets)
c = get_config()  # noqa: F821 (traitlets)
env = os.environ

# The proxy pod reaches the hub through its Service; the hub listens on the pod's address.
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = env["AIFACTORY_HUB_SERVICE"]
# The proxy runs in its own pod (same configurable-http-proxy, token from CONFIGPROXY_AUTH_TOKEN).
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = env["AIFACTORY_PROXY_API_URL"]
# Servers are Slurm jobs on compute nodes: they reach the hub through the public URL.
c.Spawner.hub_connect_url = env["AIFACTORY_HUB_URL_FOR_JOBS"]

if env.get("AIFACTORY_DB_HOST"):
    c.JupyterHub.db_url = "postgresql+psycopg2://{user}:{password}@{host}:{port}/{name}?sslmode={sslmode}".format(
        user=quote(env["AIFACTORY_DB_USER"], safe=""),
        password=quote(env["AIFACTORY_DB_PASSWORD"], safe=""),
        host=env["AIFACTORY_DB_HOST"],
        port=int(env["AIFACTORY_DB_PORT"]),
        name=quote(env["AIFACTORY_DB_NAME"], safe=""),
        sslmode=env["AIFACTORY_DB_SSLMODE"],
    )

c.JupyterHub.spawner_class = "aifactory.spawners.remote.RemoteSlurmSpawner"
c.RemoteSlurmSpawner.slurm_access = env["AIFACTORY_SLURM_ACCESS"]
if env["AIFACTORY_SLURM_ACCESS"] == "ssh":
    # ssh refuses a key that others may read; a Secret volume's files are group-readable.
    key = env["AIFACTORY_SSH_KEY"]
    os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
    shutil.copyfile(env["AIFACTORY_SSH_KEY_SECRET"], key)
    os.chmod(key, 0o600)
    c.RemoteSlurmSpawner.ssh_login_node = env["AIFACTORY_SSH_LOGIN_NODE"]
    c.RemoteSlurmSpawner.ssh_port = int(env["AIFACTORY_SSH_PORT"])
    c.RemoteSlurmSpawner.ssh_user = env["AIFACTORY_SSH_USER"]
    c.RemoteSlurmSpawner.ssh_identity_file = key
    c.RemoteSlurmSpawner.ssh_known_hosts_file = env["AIFACTORY_SSH_KNOWN_HOSTS"]
    c.RemoteSlurmSpawner.ssh_connect_timeout = int(env["AIFACTORY_SSH_CONNECT_TIMEOUT"])
