# The AI factory: `make demo` runs the platform, `make test` passes the tests.
# Both start from a fresh Debian/Ubuntu machine as root and are safe to re-run.
SHELL := /bin/bash
PREFIX ?= /opt/aifactory
VENV := $(PREFIX)/venv
BIN := $(VENV)/bin
# What the shared environment and the images install; what `make test` adds (make lock writes both).
RUNTIME_LOCK := images/requirements.lock
TEST_LOCK := tests/requirements.lock
SITE ?= hub/site/demo.yaml
PYTEST_ARGS ?=
# openssh-server: the SSH test plays a login node with its own sshd (tests/integration/test_spawner_ssh.py).
# bubblewrap: the grading sandbox starts each student's kernel in it (courses/grading/jobs.py).
# iproute2: the compute nodes' namespaces, links and bridge (hub/localcluster/nodes.py).
# ripgrep, libkrb5-dev, pkg-config, g++, make: code-server (`make apps`): VS Code's search runs Debian's rg, and
# npm builds code-server's native modules (kerberos needs krb5's headers through pkg-config).
APT_PACKAGES := slurm-wlm slurmdbd munge mariadb-server sudo lmod python3-venv python3-dev \
	gcc chromium chromium-driver curl procps openssh-server bubblewrap iproute2 \
	ripgrep libkrb5-dev pkg-config g++ make
# Editable when every user can read this checkout (jobs run as them), else a copy.
EDITABLE := $(shell runuser -u nobody -- test -r $(CURDIR)/pyproject.toml 2>/dev/null && echo --editable)

.PHONY: help install system python envs test-tools node apps labextension cluster hub demo test screenshots down bench \
	lock images

help:
	@echo "make demo   - install, start the local Slurm cluster and JupyterHub on http://localhost:8000"
	@echo "make test   - install, start everything and run the whole test suite"
	@echo "make down   - stop the hub and the cluster"
	@echo "make screenshots - the README's pictures, taken by the browser tests"
	@echo "make bench  - benchmarks against the tools this platform replaces"
	@echo "make images - the container images, base first (prints the commands without docker/apptainer)"
	@echo "make lock   - rewrite $(RUNTIME_LOCK) (runtime) and $(TEST_LOCK) (runtime + test tools) from pyproject.toml"

install: system python envs node apps labextension

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if ! command -v npm >/dev/null; then missing="$$missing nodejs npm"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "[install] Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

python: system
	@test -x $(BIN)/python || { echo "[install] shared environment $(VENV)"; /usr/bin/python3 -m venv $(VENV); }
	@$(BIN)/pip install -q --disable-pip-version-check -r $(RUNTIME_LOCK) > $(PREFIX)/pip.log 2>&1 \
	  || { cat $(PREFIX)/pip.log; exit 1; }
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps $(EDITABLE) . > $(PREFIX)/pip.log 2>&1 \
	  || { cat $(PREFIX)/pip.log; exit 1; }
	@install -D -m 644 extensions/dask/jupyter-config/aifactory-dask-cleanup.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/aifactory-dask-cleanup.json
	@install -D -m 644 extensions/workbench/jupyter-config/aifactory-workbench.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/aifactory-workbench.json
	@# Compute nodes have no internet: JupyterLab must not ask to fetch news or updates.
	@install -D -m 644 extensions/jupyterlab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@install -D -m 644 extensions/nbgrader/jupyter-config/nbgrader_config.py $(VENV)/etc/jupyter/nbgrader_config.py
	@# The workbench's apps (VS Code, TensorBoard, MLflow) behind jupyter-server-proxy, as the profile offers them.
	@install -D -m 644 extensions/workbench/jupyter-config/jupyter_server_config.py \
	  $(VENV)/etc/jupyter/jupyter_server_config.py
	@# nbgrader's panels hidden in the servers of users in no course (the launcher leaves its server extensions off).
	@install -D -m 644 extensions/workbench/jupyter-config/no-nbgrader/labconfig/page_config.json \
	  $(VENV)/etc/jupyter/aifactory-no-nbgrader/labconfig/page_config.json
	@# nbgrader's instructor panels hidden in a course student's server (extensions/workbench/course_lab.py).
	@install -D -m 644 extensions/workbench/jupyter-config/student/labconfig/page_config.json \
	  $(VENV)/etc/jupyter/aifactory-student/labconfig/page_config.json
	@# Caches that tools keep in the node's shared /tmp by user name (PyTorch's compiler: /tmp/torchinductor_<user>,
	@# adopted whoever made it, so a classmate could swap the modules it imports) go to the user's own home instead.
	@install -m 644 extensions/workbench/jupyter-config/aifactory-private-caches.pth \
	  $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/aifactory-private-caches.pth
	@# The server's start without jsonschema's IRI parsers, where the launcher asks for it (spawners/singleuser.py).
	@install -m 644 extensions/workbench/jupyter-config/aifactory-server-start.pth \
	  $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/aifactory-server-start.pth
	@# Users cannot write bytecode into a root-owned checkout: compiled here, not at every server's start.
	@test -z "$(EDITABLE)" || $(BIN)/python -m compileall -q -j 0 hub spawners extensions courses > /dev/null
	@chmod -R a+rX $(PREFIX)

# The test tools (pytest, selenium, the OIDC test provider, ...) join the shared environment only
# for `make test` and `make bench`; `make demo` and the images run without them.
test-tools: python
	@$(BIN)/pip install -q --disable-pip-version-check -r $(TEST_LOCK) > $(PREFIX)/pip.log 2>&1 \
	  || { cat $(PREFIX)/pip.log; exit 1; }
	@mkdir -p $(PREFIX)/test-node && cp tests/browser_tools/package.json $(PREFIX)/test-node/package.json
	@test -f $(PREFIX)/test-node/node_modules/axe-core/axe.min.js || \
	  npm install --prefix $(PREFIX)/test-node --omit=dev --no-package-lock --no-fund --no-audit --loglevel=error

node: system
	@mkdir -p $(PREFIX)/node && cp hub/proxy/package.json $(PREFIX)/node/package.json
	@test -x $(PREFIX)/node/node_modules/.bin/configurable-http-proxy || \
	  npm install --prefix $(PREFIX)/node --omit=dev --no-package-lock --no-fund --no-audit --loglevel=error

# VS Code in the browser: code-server from the npm registry, pinned in extensions/workbench/code-server/package.json,
# built here so that nothing is downloaded when a user opens it. Offline too: its @vscode/ripgrep would fetch
# ripgrep from GitHub unless the archive is already in its download cache, so the cache is given Debian's rg
# (RIPGREP: @vscode/ripgrep's version in code-server's shrinkwrap, and the ripgrep release it asks for);
# node-pty's build asks npx for node-gyp (npm registry), hence npm_config_yes.
CODE_SERVER := $(PREFIX)/code-server
RIPGREP := vscode-ripgrep-cache-1.15.11/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz
apps: system
	@test -x $(CODE_SERVER)/node_modules/.bin/code-server || { set -e; \
	  echo "[install] code-server (VS Code in the browser), a few minutes: log $(PREFIX)/code-server.log"; \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; mkdir -p "$$tmp/$$(dirname $(RIPGREP))" $(CODE_SERVER); \
	  tar czf "$$tmp/$(RIPGREP)" -C "$$(dirname "$$(command -v rg)")" rg; \
	  cp extensions/workbench/code-server/package.json $(CODE_SERVER)/package.json; \
	  TMPDIR="$$tmp" npm_config_yes=true npm_config_unsafe_perm=true npm install --prefix $(CODE_SERVER) --omit=dev \
	    --no-package-lock --no-fund --no-audit --loglevel=error > $(PREFIX)/code-server.log 2>&1 \
	    || { tail -40 $(PREFIX)/code-server.log; exit 1; }; }
	@chmod -R a+rX $(CODE_SERVER)

# The workbench's JupyterLab extension (extensions/workbench/lab): its packages from the npm registry
# (package-lock.json), built with the shared environment's jupyter-builder, installed prebuilt; built again
# only when its sources change (their digest is kept next to the installed extension).
LAB_EXTENSION := extensions/workbench/lab
LAB_INSTALLED := $(VENV)/share/jupyter/labextensions/@aifactory/workbench
labextension: python node
	@digest=$$(cd $(LAB_EXTENSION) && cat package.json package-lock.json tsconfig.json src/* style/* | sha256sum); \
	test "$$(cat $(LAB_INSTALLED)/.sources.sha256 2>/dev/null)" = "$$digest" || { set -e; \
	  echo "[install] the workbench's JupyterLab extension: log $(PREFIX)/labextension.log"; \
	  (cd $(LAB_EXTENSION) && npm ci --no-fund --no-audit --loglevel=error && npx tsc \
	    && PATH=$(BIN):$$PATH jupyter-builder build .) > $(PREFIX)/labextension.log 2>&1 \
	    || { tail -40 $(PREFIX)/labextension.log; exit 1; }; \
	  rm -rf $(LAB_INSTALLED); mkdir -p $(dir $(LAB_INSTALLED)); \
	  cp -r $(LAB_EXTENSION)/build/labextension $(LAB_INSTALLED); echo "$$digest" > $(LAB_INSTALLED)/.sources.sha256; \
	  chmod -R a+rX $(dir $(LAB_INSTALLED)); }

# Course environments: the site file's python environments with `packages` (the PyTorch course's), from PyPI,
# layered on the shared environment with the lock as constraints; built again only when their pins or the lock change.
envs: python
	@$(BIN)/python -m aifactory.site.pyenvs $(SITE) --constraint $(TEST_LOCK)

cluster: install
	@$(BIN)/aifactory site install $(SITE)
	@$(BIN)/aifactory cluster up

hub: cluster
	@$(BIN)/aifactory hub up

demo: hub
	@echo
	@echo "  The AI factory runs: http://localhost:8000 (log in there; the API also answers on 127.0.0.1:8000)"
	@echo "  Each user's server has its own origin: http://<user>.localhost:8000 (a browser resolves *.localhost)"
	@echo "  Demo accounts (students, trainer, researcher, admin) and their passwords:"
	@echo "      /var/lib/aifactory/secrets/demo-passwords   (root only)"
	@echo "  Operator API token (admin scopes, service aifactory-operator):"
	@echo "      /var/lib/aifactory/hub/operator-token        (root only)"
	@echo "  Logs: /var/log/aifactory/   Stop everything: make down"

test: test-tools hub
	AIFACTORY_INTEGRATION=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's pictures (tests/screenshots/), taken by the browser tests that show those pages.
SCREENSHOT_TESTS := tests/integration/test_accessibility.py tests/integration/test_session_cards.py \
	tests/integration/test_workbench_lab.py tests/integration/test_workbench_apps.py \
	tests/integration/test_course_lab_roles.py tests/integration/test_class_progress.py tests/integration/test_live_help.py
screenshots: test-tools hub
	AIFACTORY_INTEGRATION=1 AIFACTORY_SCREENSHOTS=$(CURDIR)/tests/screenshots $(BIN)/python -m pytest $(SCREENSHOT_TESTS)

down:
	-@test -x $(BIN)/aifactory && $(BIN)/aifactory hub down
	-@test -x $(BIN)/aifactory && $(BIN)/aifactory cluster down

bench: test-tools hub
	@for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The two locks, each the pip freeze of a throw-away venv (the shared environment is left alone)
# holding pyproject.toml's requirements: the runtime lock (what the shared environment and the
# images install: the dependencies and the postgresql extra, the hub image's database driver for
# the chart) and the test lock (the runtime's plus the test extra). The test lock is resolved with
# the current one as constraints, so nothing moves unless pyproject.toml asks (`make lock
# LOCK_CONSTRAINTS=` resolves afresh), then the runtime lock with the new test lock as constraints,
# so every runtime pin is in the test lock at the same version.
LOCK_CONSTRAINTS ?= $(TEST_LOCK)
REQUIREMENTS = /usr/bin/python3 -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print(*p["dependencies"], *(r for e in sys.argv[1:] for r in p["optional-dependencies"][e]), sep="\n")'
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	freeze() { what=$$1 out=$$2 constraints=$$3; shift 3; echo "[lock] $$out"; \
	  /usr/bin/python3 -m venv "$$tmp/$$what"; $(REQUIREMENTS) "$$@" > "$$tmp/$$what.in"; \
	  "$$tmp/$$what/bin/pip" install -q --disable-pip-version-check $${constraints:+-c "$$constraints"} \
	    -r "$$tmp/$$what.in" > "$$tmp/pip.log" 2>&1 || { cat "$$tmp/pip.log"; exit 1; }; \
	  { echo "# The $$what lock: \`make lock\`, from pyproject.toml's dependencies and extras: $$*."; \
	    "$$tmp/$$what/bin/pip" freeze; } > "$$tmp/$$what.lock"; \
	  mv "$$tmp/$$what.lock" "$$out"; }; \
	freeze test $(TEST_LOCK) "$(wildcard $(LOCK_CONSTRAINTS))" postgresql test; \
	freeze runtime $(RUNTIME_LOCK) $(TEST_LOCK) postgresql

# Container images (images/README.md): the shared base first, then each image on top of it,
# with docker when its daemon answers and apptainer when it is installed; otherwise the
# commands are printed in that order. Apptainer images land in build/images/.
IMAGE_NAMES := hub singleuser-cpu singleuser-rocm singleuser-cuda
IMAGE_PREFIX ?= localhost/aifactory
IMAGE_TAG ?= 0.1.0
DOCKER ?= $(shell docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && echo docker)
APPTAINER ?= $(shell command -v apptainer || command -v singularity)
images:
	@set -e; mkdir -p build/images; \
	docker="$(if $(DOCKER),,echo )docker"; apptainer="$(if $(APPTAINER),$(APPTAINER),echo apptainer)"; \
	test -n "$(DOCKER)" || echo "# no docker daemon: the Docker build order"; \
	$$docker build -f images/base/Dockerfile -t $(IMAGE_PREFIX)/base:$(IMAGE_TAG) .; \
	for image in $(IMAGE_NAMES); do \
	  $$docker build --build-arg BASE=$(IMAGE_PREFIX)/base:$(IMAGE_TAG) -f images/$$image/Dockerfile \
	    -t $(IMAGE_PREFIX)/$$image:$(IMAGE_TAG) .; \
	done; \
	test -n "$(APPTAINER)" || echo "# no apptainer: the Apptainer build order"; \
	$$apptainer build --force build/images/aifactory-base.sif images/base/base.def; \
	for image in $(IMAGE_NAMES); do \
	  $$apptainer build --force build/images/aifactory-$$image.sif images/$$image/$$image.def; \
	done
