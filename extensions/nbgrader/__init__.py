"""nbgrader in the user's server: the exchange plugin (`exchange.py`) that makes nbgrader's
Assignments panel, `nbgrader fetch_assignment|submit|list` and the formgrader's buttons use the
platform's per-course exchange, and the config that selects it (`jupyter-config/`,
installed as the shared environment's ``etc/jupyter/nbgrader_config.py``)."""
