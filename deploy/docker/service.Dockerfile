# syntax=docker/dockerfile:1
# The five services in one image, each started as `python -m services.<name>` (the Deployment passes the module as
# its args); the same image runs the migration Jobs (`services.common.migrations upgrade <name>`) and the pods'
# schema wait (`deploy.wait_for_schema <name>`). Build from the repository root:
#   docker build -f deploy/docker/service.Dockerfile -t nerava-service .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned runtime dependencies only (no toolchain, no test or lint stack) -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/runtime.txt /tmp/runtime.txt
RUN /opt/venv/bin/pip install -r /tmp/runtime.txt
# The services, the generated code (gen/: pb2, grpc stubs, .pyi and the descriptor set nerava.binpb) and the schema
# wait. Byte-compiled here, since the root filesystem is read-only at run time.
COPY services/ /app/services/
COPY gen/ /app/gen/
COPY deploy/__init__.py deploy/wait_for_schema.py /app/deploy/
RUN /opt/venv/bin/python -m compileall -q /app

# --- runtime ----------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 nerava \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nerava
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRPC_HOST=0.0.0.0
WORKDIR /app
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# gRPC (with grpc.health.v1 for the probes) and Prometheus /metrics, when <SERVICE>_PORT / <SERVICE>_METRICS_PORT
# say so (deploy/k8s/base/config/runtime.env).
EXPOSE 50051 9090
ENTRYPOINT ["python", "-m"]
CMD ["services.accounts"]
