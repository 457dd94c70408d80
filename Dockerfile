# nodelocaldns-agent image: `docker build -t nodelocaldns-agent:0.1.0 .`
#
# Two stages: the builder turns this repository into a wheel and installs it, with the
# exact runtime pins of requirements.lock, into a venv; the final stage gets only that
# venv on the same base image (no compiler, no pip cache, no source tree).
# One base for both stages, named with its registry, pinned to an exact Python patch release
# and Debian release. Pin its digest too where your registry policy requires it, or use a
# mirror:
#   docker build --build-arg BASE_IMAGE=docker.io/library/python:3.11.14-slim-bookworm@sha256:<digest> .
# checkov:skip=CKV_DOCKER_7:checkov does not read ARG defaults; BASE_IMAGE is an exact tag (tests/test_dockerfile.py)
ARG BASE_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY nodelocaldns_agent ./nodelocaldns_agent

# The venv has no pip of its own: the builder's pip installs into it (--python).
RUN python -m venv --without-pip /opt/venv \
 && pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && pip --python /opt/venv/bin/python install --no-cache-dir \
        -r requirements.lock /tmp/wheels/nodelocaldns_agent-*.whl \
 && pip --python /opt/venv/bin/python check \
 && rm -rf /tmp/wheels

FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nodelocaldns-agent" \
      org.opencontainers.image.description="Moves kubelet's cluster DNS to NodeLocal DNSCache on IPVS-mode Kubernetes nodes, safely." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# nsenter (util-linux, essential in Debian) restarts kubelet in the host's namespaces:
# fail the build if the base image ever stops shipping it. Then a smoke test of the
# entry point.
RUN nsenter --version \
 && nodelocaldns-agent --help >/dev/null

# Root on purpose: the agent edits root-owned kubelet files on the host and enters PID 1's
# namespaces; the chart drops every capability it does not need and mounts / read-only.
# Kubernetes probes /healthz and /readyz on the metrics port (see the chart); Docker's
# HEALTHCHECK is not used by Kubernetes.
# checkov:skip=CKV_DOCKER_2:health is checked by the chart's liveness/readiness probes
# hadolint ignore=DL3002
USER 0

ENTRYPOINT ["nodelocaldns-agent"]
CMD ["run"]
