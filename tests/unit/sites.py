"""A small site used by the unit tests: two partitions, one project, one course."""

SMALL_SITE = """
cluster: {name: tiny, title: Tiny centre}
partitions:
  - {name: cpu, nodes: 2, cpus_per_node: 4, memory_per_node: 8G, max_walltime: "1-00:00:00", default: true}
  - name: gpu
    nodes: 1
    cpus_per_node: 4
    memory_per_node: 8G
    max_walltime: "12:00:00"
    gpus: {type: a100, count: 2}
projects:
  - {name: proj_a, title: Project A, members: [alice, bob], cpu_hours: 100}
environments:
  - {name: base, kind: python, path: /opt/aifactory/venv}
profiles:
  - name: small
    title: Small
    partition: cpu
    environment: base
    cpus: {min: 1, max: 4, default: 1}
    memory: {min: 1G, max: 4G, default: 2G}
    walltime: {max: "8:00:00", default: "1:00:00"}
  - name: gpu
    title: GPU
    partition: gpu
    environment: base
    cpus: {min: 1, max: 4, default: 2}
    memory: {min: 1G, max: 8G, default: 4G}
    gpus: {min: 1, max: 2, default: 1}
    walltime: {max: "12:00:00", default: "2:00:00"}
    groups: [researchers]
courses:
  - {id: ml101, title: ML 101, trainers: [bob], students: [alice], profile: small, project: proj_a}
groups:
  - {name: students}
  - {name: researchers}
users:
  - {name: alice, groups: [students]}
  - {name: bob, groups: [researchers]}
auth: {kind: pam, admin_groups: [researchers]}
local: {cpus: 12, memory: 24G}
"""
