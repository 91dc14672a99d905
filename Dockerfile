# syntax=docker/dockerfile:1.7
#
# One image recipe for every StreamDx service. Build one image per service:
#
#   docker build --build-arg SERVICE=ingest    -t streamdx-ingest .
#   docker build --build-arg SERVICE=dsp       -t streamdx-dsp .
#   docker build --build-arg SERVICE=inference -t streamdx-inference .
#   docker build --build-arg SERVICE=alerts    -t streamdx-alerts .
#   docker build --build-arg SERVICE=web       -t streamdx-web .
#
# or build once and choose the service at run time (`docker run IMAGE dsp`); the images differ
# only in their default CMD and health-check port, the installed code is the same (the web
# image also carries WeasyPrint's system libraries and fonts, see service-web below).
# An unknown SERVICE fails the build ("service-<name>" stage not found).

ARG PYTHON_IMAGE=python:3.11-slim
ARG SERVICE=ingest

# ---------------------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The project is installed as a regular (non-editable) wheel with its dependencies, so the
# runtime stage needs nothing from /src; pip precompiles the bytecode (read-only root fs).
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# devkit/ (demo, device simulators, end-to-end bench) is deliberately not copied: no service imports it
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip \
 && pip install . \
 && streamdx --help >/dev/null
# ONNX models of the inference service (models/esr_gru/{esr_gru.json,model_T*.onnx,MODEL_CARD.md}).
# The installed wheel cannot find the source tree's models/, so the runtime stage copies them to
# /opt/streamdx/models and points MODELS_DIR there. Normalise the modes here (directories 0755,
# files 0644, whatever the checkout's umask) so the runtime copy needs no extra chmod layer.
COPY models ./models
RUN chmod -R u=rwX,go=rX ./models \
 && test -f ./models/esr_gru/esr_gru.json \
 && ls ./models/esr_gru/model_T*.onnx >/dev/null

# ---------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_LEVEL=INFO \
    MODELS_DIR=/opt/streamdx/models \
    HOME=/tmp
RUN groupadd --system --gid 10001 streamdx \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin streamdx
COPY --from=builder /opt/venv /opt/venv
# Owned by root (COPY --from without --chown) and 0644/0755: readable, not writable, by 10001.
COPY --from=builder /src/models /opt/streamdx/models
WORKDIR /tmp
USER 10001:10001
# The root filesystem can be mounted read-only: bytecode is precompiled and /tmp is the only
# writable path the services need (mount a tmpfs / emptyDir there).
ENV HEALTH_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTH_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["streamdx", "serve"]

# ------------------------------------------------------------------ one thin stage per service
# An exec-form CMD cannot expand a build argument, so each service gets its own small stage and
# the final stage is picked by SERVICE below (BuildKit builds only the stages it needs).
# HEALTH_PORT is read only by the HEALTHCHECK above (ingest serves /healthz on INGEST_PORT, the
# workers on METRICS_PORT, web on WEB_PORT); the services themselves do not read it. Every image
# carries the models of the runtime stage; only inference loads them (the others ignore them).
FROM runtime AS service-ingest
# slide uploads are spooled here while they are tiled (a volume: they can be GBs, /tmp is small)
USER root
RUN install -d -o 10001 -g 10001 -m 0750 /var/lib/streamdx/slides-spool
USER 10001:10001
ENV HEALTH_PORT=8000 INGEST_HOST=0.0.0.0 INGEST_PORT=8000 SLIDES_SPOOL_DIR=/var/lib/streamdx/slides-spool
CMD ["ingest"]

FROM runtime AS service-dsp
ENV HEALTH_PORT=9101 METRICS_HOST=0.0.0.0 METRICS_PORT=9101
EXPOSE 9101
CMD ["dsp"]

FROM runtime AS service-inference
ENV HEALTH_PORT=9102 METRICS_HOST=0.0.0.0 METRICS_PORT=9102
EXPOSE 9102
CMD ["inference"]

# alerts serves its API (/v1/subscriptions, /v1/streams/{id}/summary, /docs) on METRICS_PORT too
FROM runtime AS service-alerts
ENV HEALTH_PORT=8001 METRICS_HOST=0.0.0.0 METRICS_PORT=8001
EXPOSE 8001
CMD ["alerts"]

# web: the operator console (pages, /healthz; no /metrics) on WEB_PORT. Its PDF reports use
# WeasyPrint, which loads Pango, HarfBuzz and fontconfig at run time (cffi dlopen; the wheel does
# not bundle them) and needs at least one font, so this stage alone adds them with apt (as root,
# then back to 10001). Evaluation runs go to WEB_RUNS_DIR: created here owned by 10001 so that a
# Docker named volume mounted there starts writable; on Kubernetes it is an emptyDir.
FROM runtime AS service-web
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 libcairo2 \
        libfontconfig1 fontconfig fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && python -c "import weasyprint" \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/streamdx/web-runs
USER 10001:10001
ENV HEALTH_PORT=8080 WEB_HOST=0.0.0.0 WEB_PORT=8080 \
    WEB_RUNS_DIR=/var/lib/streamdx/web-runs WEB_DATA_ROOT=/var/lib/streamdx/data
EXPOSE 8080
CMD ["web"]

# -------------------------------------------------------------------------------------- final
FROM service-${SERVICE} AS final
ARG SERVICE
LABEL org.opencontainers.image.title="streamdx-${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
