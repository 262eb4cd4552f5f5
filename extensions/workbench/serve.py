"""Serve TensorBoard or MLflow's UI on a Unix socket, for jupyter-server-proxy (see `apps`).

    python -m aifactory.extensions.workbench.serve tensorboard|mlflow --socket PATH

Their own command lines listen on TCP ports only, which any user with a job on the node could reach
(MLflow's UI writes too). Here each one's WSGI app is served by werkzeug on the socket that
jupyter-server-proxy chose in its private folder, so only the user's own server reaches it.

- TensorBoard reads `AIFACTORY_TENSORBOARD_LOGDIR` when set and acceptable (a folder in the user's home,
  relative paths counting from it, or an existing folder elsewhere that the user owns), else `~/tensorboard`.
  It loads with its Python reader (`--load_fast=false`): the fast reader is a separate data server on a
  TCP port of the node.
- MLflow's UI shows the store in `MLFLOW_TRACKING_URI` (the kernels have the same one, set by the server's
  config) when it is a database or folder, else `apps.mlflow_tracking_uri`; MLflow's own Host and Origin
  checks admit the user's public URL (JupyterHub's `JUPYTERHUB_PUBLIC_URL`) besides localhost.

Heavy imports (TensorBoard, MLflow) happen here, in the app's own process, only when the app is opened.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from . import apps


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def tensorboard_logdir(choice: str | None, home: Path, uid: int) -> tuple[Path, str]:
    """The log folder TensorBoard reads and, when the user's choice was refused, why (else "")."""
    default = home / apps.TENSORBOARD_LOGDIR
    if not choice:
        return default, ""
    path = Path(os.path.expanduser(choice))
    path = (home / path if not path.is_absolute() else path).resolve()
    if _inside(path, home.resolve()):
        return path, ""
    try:
        st = path.stat()
    except OSError as e:
        return default, f"{choice} cannot be read ({e.strerror})"
    if not path.is_dir() or st.st_uid != uid:
        return default, f"{choice} is neither in the home folder nor a folder of the user's own"
    return path, ""


def _serve_forever(app, socket_path: str) -> None:
    from werkzeug.serving import make_server

    make_server(f"unix://{socket_path}", 0, app, threaded=True).serve_forever()


def tensorboard(socket_path: str) -> None:
    from tensorboard import default, program

    logdir, refused = tensorboard_logdir(os.environ.get("AIFACTORY_TENSORBOARD_LOGDIR"), Path.home(), os.getuid())
    if refused:
        print(f"[aifactory] AIFACTORY_TENSORBOARD_LOGDIR refused: {refused}; showing {logdir}", file=sys.stderr)
    logdir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the user's runs are theirs, even in a 0755 home

    class UnixSocketServer(program.TensorBoardServer):
        """TensorBoard's app on the socket (TensorBoard's own server takes a TCP port)."""

        def __init__(self, wsgi_app, flags):
            self.app = wsgi_app

        def serve_forever(self):
            _serve_forever(self.app, socket_path)

        def get_url(self):
            return "http://localhost/"

    board = program.TensorBoard(plugins=default.get_plugins(), server_class=UnixSocketServer)
    board.configure(logdir=str(logdir), load_fast="false", reload_interval=5.0)
    print(f"[aifactory] TensorBoard on {logdir}", file=sys.stderr, flush=True)
    board.launch()  # serves in a daemon thread
    threading.Event().wait()


def mlflow_store(tracking_uri: str | None, home: Path) -> str:
    """The store the UI shows: the kernels' one when it is local (a database or folder), else the default."""
    if tracking_uri and urlsplit(tracking_uri).scheme not in ("http", "https", "databricks", "databricks-uc"):
        return tracking_uri
    return apps.mlflow_tracking_uri(home)


def mlflow(socket_path: str) -> None:
    home = Path.home()
    store = mlflow_store(os.environ.get("MLFLOW_TRACKING_URI"), home)
    if store.startswith("sqlite:///"):
        Path(store.removeprefix("sqlite:///")).parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # ~/mlflow
    # What `mlflow server --backend-store-uri ... --default-artifact-root ...` hands its workers.
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = store
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = apps.mlflow_artifacts(home)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline nodes; and the user's runs are theirs
    public = urlsplit(os.environ.get("JUPYTERHUB_PUBLIC_URL", ""))
    if public.netloc:
        os.environ.setdefault("MLFLOW_SERVER_ALLOWED_HOSTS", f"{public.netloc},localhost")
        os.environ.setdefault("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", f"{public.scheme}://{public.netloc}")
    from mlflow.server import app

    print(f"[aifactory] MLflow on {store}", file=sys.stderr, flush=True)
    _serve_forever(app, socket_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aifactory.extensions.workbench.serve", description=__doc__)
    parser.add_argument("app", choices=["tensorboard", "mlflow"])
    parser.add_argument("--socket", required=True, help="the Unix socket to serve on")
    args = parser.parse_args(argv)
    {"tensorboard": tensorboard, "mlflow": mlflow}[args.app](args.socket)


if __name__ == "__main__":
    main()
