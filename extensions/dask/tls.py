"""TLS for a user's Dask cluster, with credentials made for that cluster and readable only by its owner.

Anyone on a node sees a scheduler's address in `ps`; without TLS they could
connect and run code as its owner (`run_on_scheduler`). So every `SiteCluster`
makes its own self-signed certificate (`Security.temporary()`: one key, its
certificate is also the CA), and scheduler, workers, nannies and clients accept
only connections that present a certificate signed by it.

The worker jobs read the files from a directory in the owner's home (all nodes
see it): mode 0700, files 0600, a fresh directory per cluster, removed when the
cluster closes. Only their paths reach the job script and the workers' argv.
The owner's later clients, such as the `Client("tls://...")` cell that
dask-labextension inserts, find them through distributed's
`distributed.client.security-loader` hook (`load_security`).

Building names and `Security` objects is pure; `write_credentials`,
`remove_credentials` and `load_security` are the edges.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # distributed is imported where a Security is made: the server's shutdown hook needs none
    from distributed.security import Security

DEFAULT_DIRECTORY = "~/.aifactory/dask-tls"
CA, CERT, KEY, ADDRESS = "ca.pem", "cert.pem", "key.pem", "address"
# The `distributed.client.security-loader` value the site's dask config installs.
LOADER = "aifactory.extensions.dask.tls.load_security"


def credentials_root(base: str | os.PathLike | None = None) -> Path:
    return Path(os.path.expanduser(str(base or DEFAULT_DIRECTORY)))


def credentials_dir(job_name: str, base: str | os.PathLike | None = None) -> Path:
    """The directory of one cluster's credentials, named by its (unique) Slurm job name."""
    return credentials_root(base) / job_name


def pem_files(temporary: Security) -> dict[str, str]:
    """File name -> PEM text of a `Security.temporary()`: one certificate serves as CA and for every role."""
    return {CA: temporary.tls_ca_file, CERT: temporary.tls_worker_cert, KEY: temporary.tls_worker_key}


def cluster_security(directory: Path) -> Security:
    """Every role (scheduler, worker, nanny, client) uses the files in `directory` and requires TLS.

    Paths rather than the PEM text: dask-jobqueue then passes the paths to the
    workers as they are, and distributed reads them without copying the key
    into a temporary file for each connection.
    """
    from distributed.security import Security

    ca, cert, key = (str(directory / name) for name in (CA, CERT, KEY))
    return Security(
        require_encryption=True,
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
    )


def security_client_config() -> dict:
    """The dask config under which a plain `Client(address)` of the owner finds that cluster's credentials."""
    return {"distributed": {"client": {"security-loader": LOADER}}}


def matching_cluster(addresses: dict[Path, str], address: str) -> Path | None:
    """The credentials directory whose recorded scheduler address is `address`, if any."""
    return next((directory for directory, recorded in addresses.items() if recorded == address), None)


# ---- edges ----


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(text)


def write_credentials(directory: Path, files: dict[str, str]) -> None:
    """A new 0700 directory holding `files` as 0600 files; refuses one that exists (O_EXCL, no symlinks)."""
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.mkdir(mode=0o700)
    try:
        os.chmod(directory, 0o700)
        for name, text in files.items():
            _write_private(directory / name, text)
    except BaseException:
        remove_credentials(directory)
        raise


def record_address(directory: Path, address: str) -> None:
    """Note the scheduler's address next to the credentials, for `load_security`."""
    _write_private(directory / ADDRESS, address)


def remove_credentials(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def load_security(info: dict, base: str | os.PathLike | None = None) -> Security | None:
    """distributed's security-loader: this user's credentials for the cluster at `info["address"]`, else None
    (then distributed uses its default, and a TLS scheduler of someone else refuses the connection)."""
    addresses = {}
    try:
        entries = list(credentials_root(base).iterdir())
    except OSError:
        return None
    for directory in entries:
        try:
            addresses[directory] = (directory / ADDRESS).read_text()
        except OSError:
            continue
    found = matching_cluster(addresses, info.get("address") or "")
    return cluster_security(found) if found is not None else None
