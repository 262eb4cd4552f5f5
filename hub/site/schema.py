"""The typed schema of a site configuration: one YAML file that describes a centre.

Everything else (Slurm config of the local cluster, hub config, spawner
profiles, Dask defaults, courses, Helm values) is derived from a `Site` by pure
functions. Structural rules live on the models; rules that relate one part of
the file to another live in `checks.py`, so each problem can name its own path.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .units import format_memory, format_walltime, parse_memory_mib, parse_walltime_minutes

NAME_RE = r"^[a-z][a-z0-9_-]{0,31}$"
USER_RE = r"^[a-z_][a-z0-9_-]{0,31}$"
PATH_RE = r"^/[A-Za-z0-9._/+-]*$"
MODULE_RE = r"^[A-Za-z0-9][A-Za-z0-9._+/-]*$"
# What each pattern means, for error messages a person can act on.
PATTERN_HELP = {
    NAME_RE: "a name of lower-case letters, digits, '-' and '_', starting with a letter (at most 32)",
    USER_RE: "a Unix user name: lower-case letters, digits, '-' and '_' (at most 32)",
    PATH_RE: "an absolute path of letters, digits and . _ / + -",
    MODULE_RE: "a module name like 'PyTorch/2.3.1-rocm'",
}

# Names that end up in Slurm, Unix and URLs: lower case, no spaces, no shell metacharacters.
Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
UserName = Annotated[str, StringConstraints(pattern=USER_RE)]
AbsolutePath = Annotated[str, StringConstraints(pattern=PATH_RE)]
ModuleName = Annotated[str, StringConstraints(pattern=MODULE_RE)]

MemoryMiB = Annotated[int, BeforeValidator(parse_memory_mib)]
Minutes = Annotated[int, BeforeValidator(parse_walltime_minutes)]


class Model(BaseModel):
    """Strict base: unknown fields are errors, parsed sites are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterInfo(Model):
    name: Name = Field(description="Slurm ClusterName; also names the hub.")
    title: str = Field("", description="Human name of the centre, shown on the pages.")


class GpuSpec(Model):
    type: Name = Field(description="GRES type, e.g. 'mi250x' or 'a100'.")
    count: int = Field(ge=1, le=64, description="GPUs per node.")
    vendor: Literal["amd", "nvidia"] = Field("nvidia", description="Selects --rocm or --nv for containers.")


class Partition(Model):
    name: Name
    description: str = ""
    nodes: int = Field(ge=1, description="Nodes in the partition.")
    cpus_per_node: int = Field(ge=1)
    memory_per_node: MemoryMiB
    gpus: GpuSpec | None = None
    max_walltime: Minutes
    default: bool = False
    network_interface: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,15}$")] | None = Field(
        None, description="Interface jobs talk on (e.g. 'hsn0' on Slingshot); None lets Dask choose."
    )
    local_scratch: AbsolutePath = Field("/tmp", description="Node-local scratch directory, e.g. for Dask spill files.")

    @property
    def gpus_per_node(self) -> int:
        return self.gpus.count if self.gpus else 0

    @property
    def gpu_type(self) -> str | None:
        return self.gpus.type if self.gpus else None

    @property
    def gpu_vendor(self) -> str | None:
        return self.gpus.vendor if self.gpus else None


class Project(Model):
    """A Slurm account that jobs are charged to."""

    name: Name
    title: str = ""
    members: list[UserName] = Field(default_factory=list, description="Users with an association.")
    cpu_hours: int | None = Field(None, ge=0, description="Allocation in core-hours, if any.")
    gpu_hours: int | None = Field(None, ge=0, description="Allocation in GPU-hours, if any.")


REQUIREMENT_RE = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?==[A-Za-z0-9]([A-Za-z0-9.+!_-]*[A-Za-z0-9])?$"


def _pinned(requirement: str) -> str:
    if not re.fullmatch(REQUIREMENT_RE, requirement):
        raise ValueError(f"{requirement!r} is not a pinned requirement: expected name==version, e.g. 'torch==2.15.0'")
    return requirement


class PythonEnvironment(Model):
    kind: Literal["python"]
    name: Name
    description: str = ""
    path: AbsolutePath = Field(description="Prefix of a Python environment holding jupyterhub-singleuser.")
    packages: list[Annotated[str, AfterValidator(_pinned)]] = Field(
        default_factory=list, description="Pinned requirements (name==version) the platform's install puts into "
        "this environment from PyPI (aifactory.site.pyenvs); empty: the environment is made elsewhere.")
    extends: Name | None = Field(
        None, description="A python environment of this site that this one layers on: it sees that one's "
        "packages and holds only its own `packages`, which may not move the base's versions.")


class LmodEnvironment(Model):
    kind: Literal["lmod"]
    name: Name
    description: str = ""
    modules: list[ModuleName] = Field(min_length=1, description="Loaded in order with `module load`.")
    modulepath: list[AbsolutePath] = Field(default_factory=list, description="Prepended with `module use`.")
    init: AbsolutePath = Field("/usr/share/lmod/lmod/init/bash",
                               description="Lmod's bash init script on the nodes, sourced before the modules load.")


class ContainerEnvironment(Model):
    kind: Literal["container"]
    name: Name
    description: str = ""
    image: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$|^/[A-Za-z0-9._/+-]+$")]
    runtime: Literal["apptainer", "singularity"] = "apptainer"
    binds: list[Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/+-]*(:/[A-Za-z0-9._/+-]*)?(:ro|:rw)?$")]] = Field(
        default_factory=list
    )


Environment = Annotated[
    Union[PythonEnvironment, LmodEnvironment, ContainerEnvironment], Field(discriminator="kind")
]


def _ordered(r: "Range") -> "Range":
    if not (r.min <= r.default <= r.max):
        raise ValueError(f"needs min <= default <= max, got min={r.min} default={r.default} max={r.max}")
    return r


class Range(Model):
    min: int = Field(ge=0)
    max: int = Field(ge=0)
    default: int = Field(ge=0)

    _check = model_validator(mode="after")(_ordered)


class MemoryRange(Model):
    min: MemoryMiB
    max: MemoryMiB
    default: MemoryMiB

    _check = model_validator(mode="after")(_ordered)


class WalltimeRange(Model):
    min: Minutes = 1
    max: Minutes
    default: Minutes

    _check = model_validator(mode="after")(_ordered)


def _at_least_one_cpu(r: Range) -> Range:
    if r.min < 1:
        raise ValueError("a server needs at least 1 CPU (min >= 1)")
    return r


# The web apps a profile can offer (extensions/workbench/apps.py says how each one runs).
App = Literal["vscode", "tensorboard", "mlflow"]


class Profile(Model):
    """What a user may start: a partition, an environment and resource ranges."""

    name: Name
    title: str
    description: str = ""
    partition: Name
    environment: Name
    cpus: Annotated[Range, AfterValidator(_at_least_one_cpu)]
    memory: MemoryRange
    gpus: Range = Range(min=0, max=0, default=0)
    walltime: WalltimeRange
    groups: list[Name] = Field(default_factory=list, description="Groups that may use it; empty means everyone.")
    apps: list[App] = Field(default_factory=list, description="Web apps its servers offer next to JupyterLab, "
                            "each behind the user's own server (jupyter-server-proxy) with a launcher tile.")

    @field_validator("apps")
    @classmethod
    def _apps_once(cls, apps: list[str]) -> list[str]:
        if len(set(apps)) != len(apps):
            raise ValueError("each app may be named once")
        return apps


class Course(Model):
    id: Name
    title: str
    trainers: list[UserName] = Field(min_length=1)
    students: list[UserName] = Field(default_factory=list)
    profile: Name
    project: Name = Field(description="Slurm account charged for the course's servers and grading jobs.")
    reservation: Name | None = Field(None, description="Slurm reservation the course's jobs run in.")
    trainers_access_servers: bool = Field(
        False, description="Whether the course's trainers may open their students' running servers."
    )


class Group(Model):
    name: Name
    description: str = ""


class User(Model):
    """A person the platform knows. The local cluster creates each as a Unix account."""

    name: UserName
    groups: list[Name] = Field(default_factory=list)


class PamAuth(Model):
    kind: Literal["pam"]
    service: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")] = "login"
    admin_groups: list[Name] = Field(default_factory=list)


Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]


class OidcAuth(Model):
    kind: Literal["oidc"]
    issuer: Url
    authorize_url: Url
    token_url: Url
    userdata_url: Url
    client_id: str = Field(min_length=1)
    client_secret_file: AbsolutePath
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    admin_groups: list[Name] = Field(default_factory=list)


Auth = Annotated[Union[PamAuth, OidcAuth], Field(discriminator="kind")]


class Limits(Model):
    servers_per_user: int = Field(1, ge=1, le=20)
    idle_timeout: Minutes = Field(60, description="Stop servers idle this long.")
    max_session: Minutes = Field(12 * 60, description="Stop servers older than this.")
    gpu_idle_timeout: Minutes = Field(
        60, description="Warn, then stop a server holding GPUs once its GPUs and its kernels were idle this long."
    )


def check_subdomain_host(url: str) -> str:
    """`scheme://domain[:port]`, nothing more: JupyterHub serves each user from `<user>.<domain>`."""
    wrong = ValueError(f"must be like 'https://ai.example.org' or 'http://localhost:8000', not {url!r}")
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018  (a port that is no number raises here)
    except ValueError:
        raise wrong from None
    domain = parsed.hostname or ""
    if (
        parsed.scheme not in ("http", "https")
        or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", domain)
        or "@" in parsed.netloc
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
    ):
        raise wrong
    return url.rstrip("/")


class HubSettings(Model):
    ip: str = Field("127.0.0.1", pattern=r"^[0-9.]+$|^[0-9a-fA-F:]+$",
                    description="Address of the public proxy (the URL users open).")
    api_ip: IPv4Address | None = Field(
        None, description="Address of the hub's API on the network the compute nodes reach it through: "
        "the hub listens there, and servers and Dask report to it there (JupyterHub's hub_ip). Default: "
        "a local cluster's login-node address (local.network), else `ip`.")
    port: int = Field(8000, ge=1, le=65535)
    hub_port: int = Field(8081, ge=1, le=65535)
    min_uid: int = Field(1000, ge=1, description="Accounts below this uid (system accounts) never get a server.")
    subdomain_host: Annotated[str, AfterValidator(check_subdomain_host)] | None = Field(
        None,
        description="Public URL of the hub whose subdomains serve users' servers (`<user>.<domain>`): each "
        "server gets its own origin, so a page a user serves cannot script the hub or another server. "
        "Needs wildcard DNS (and a wildcard TLS certificate) for `*.<domain>`.",
    )
    formgrader_port_base: int = Field(
        18100, ge=1024, le=32000,
        description="Loopback port of the first course's formgrader; each further course takes the next one. "
        "Keep it below the ephemeral ports (32768-60999), where servers, kernels and Dask bind by chance: a "
        "formgrader that cannot bind its port stops the hub.",
    )
    traits: dict[str, dict[str, bool | int | float | str | list[str]]] = Field(
        default_factory=dict,
        description="An operator's tuning of the hub's traitlets, applied over what the site derives: "
        "{class: {trait: value}}, e.g. {SiteSlurmSpawner: {slurm_poll_interval: 60, partition_state_seconds: 10}}. "
        "Only the timing, caching and capacity knobs in hub/config.py TUNABLE_TRAITS are taken (this file is "
        "world-readable and its traits apply last); `aifactory config validate` names any other.",
    )
    formgrader_start_timeout: int = Field(
        120, ge=10, le=3600,
        description="Seconds a course's formgrader may take to start (Jupyter server with nbgrader imports in a "
        "few seconds, much slower on a loaded node).",
    )


class CourseStorage(Model):
    """Where courses live on the file system that the hub, the login nodes and every compute node mount."""

    courses_root: AbsolutePath = Field(
        "/srv/aifactory/courses", description="The courses' nbgrader folders (source, release, gradebook, "
        "autograded, feedback), one per course; trainers only.")
    exchange_root: AbsolutePath = Field(
        "/srv/aifactory/exchange", description="The per-course exchange (outbound, inbound/<student>, "
        "feedback/<student>) through which students fetch and submit.")
    max_submission: MemoryMiB = Field(
        parse_memory_mib("100M"), description="Largest hand-in (all its files together) a student may submit "
        "and a trainer collects, e.g. 100M or 2G; anything larger is refused with this size named.")


# Compute nodes take local.network's addresses from .11 on, as a centre numbers its nodes.
FIRST_NODE_HOST = 11


class LocalCluster(Model):
    """What this one machine gives the multi-node cluster `aifactory cluster up` builds on it.

    Each partition's `nodes` become compute nodes here: Linux network, UTS and mount
    namespaces, each with its own address on a private bridge and its own slurmd. The
    nodes' CPUs and memory together must fit these totals."""

    cpus: int = Field(32, ge=1, le=1024, description="Slurm CPUs all nodes together may declare; may exceed "
                      "real cores (jobs of a class mostly wait for people).")
    memory: MemoryMiB = Field(parse_memory_mib("16G"), description="Memory all nodes together may declare "
                              "(Slurm RealMemory); at most what the machine has to spare for jobs.")
    network: IPv4Network = Field(IPv4Network("10.77.0.0/24"), description="Private network of the nodes: "
                                 "the login node (hub, proxy, slurmctld) takes its first address, the "
                                 "compute nodes the next ones from .11 on. Only these and loopback are used.")

    @property
    def login_address(self) -> str:
        """The login node's address on the nodes' network: slurmctld and the hub's API answer there."""
        return str(next(self.network.hosts()))


class Site(Model):
    cluster: ClusterInfo
    partitions: list[Partition] = Field(min_length=1)
    projects: list[Project] = Field(min_length=1)
    environments: list[Environment] = Field(min_length=1)
    profiles: list[Profile] = Field(min_length=1)
    courses: list[Course] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    auth: Auth
    limits: Limits = Limits()
    hub: HubSettings = HubSettings()
    course_storage: CourseStorage = CourseStorage()
    local: LocalCluster | None = Field(None, description="Present when the site is the embedded local cluster.")

    # Lookups by name; the checks guarantee names are unique and references resolve.
    def partition(self, name: str) -> Partition:
        return next(p for p in self.partitions if p.name == name)

    def environment(self, name: str) -> PythonEnvironment | LmodEnvironment | ContainerEnvironment:
        return next(e for e in self.environments if e.name == name)

    def profile(self, name: str) -> Profile:
        return next(p for p in self.profiles if p.name == name)

    def default_partition(self) -> Partition:
        return next((p for p in self.partitions if p.default), self.partitions[0])

    def projects_of(self, user: str) -> list[Project]:
        return [p for p in self.projects if user in p.members]

    def hub_api_ip(self) -> str:
        """Where the hub's API listens and every job reaches it; never assumed to be loopback."""
        if self.hub.api_ip is not None:
            return str(self.hub.api_ip)
        if self.local is not None:
            return self.local.login_address
        return self.hub.ip

    def groups_of(self, user: str) -> list[str]:
        return next((list(u.groups) for u in self.users if u.name == user), [])


__all__ = [
    "Site",
    "Partition",
    "Project",
    "Profile",
    "Course",
    "User",
    "Group",
    "PythonEnvironment",
    "LmodEnvironment",
    "ContainerEnvironment",
    "PamAuth",
    "OidcAuth",
    "Limits",
    "HubSettings",
    "LocalCluster",
    "format_memory",
    "format_walltime",
]
