"""The AI workbench inside a user's server: the apps next to JupyterLab, the GPUs in view, the time left.

- `apps`: VS Code, TensorBoard and MLflow's UI behind jupyter-server-proxy, as the profile offers them;
- `gpus`: reading the job's own GPUs from amd-smi / rocm-smi (AMD) and NVML (NVIDIA), pure parsing;
- `idle`: whether a server's idle GPUs should be reclaimed, a pure decision on a utilisation series;
- `handlers`: the server extension the JupyterLab extension (`lab/`) asks for the session and its GPUs.
"""
