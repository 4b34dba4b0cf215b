# celsius/model: the exported SavedModel under /models/f2c/<version>/, made by the project's one
# export command (python -m celsius_model export, pinned TensorFlow) in a build stage, on a small
# base. Meant for an init container that copies it where TF Serving (or celsius/model-server)
# reads it:
#   cp -r /models/f2c /shared/    (then: --model_base_path=/shared/f2c)
# Build context: model/.
#   DOCKER_BUILDKIT=0 docker build -f model/model.Dockerfile -t celsius/model:dev model
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS export
# Optional PEM text of extra CA certificates (corporate proxies; pip uses https); empty does nothing.
ARG EXTRA_CA_CERTS=""
ARG MODEL_VERSION=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra.crt && update-ca-certificates; \
    fi
COPY requirements-runtime.txt /tmp/
# PIP_CERT: pip uses its own CA bundle unless told to use the system's (with the extras).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -q -r /tmp/requirements-runtime.txt
COPY src/ /opt/celsius/
RUN TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=/opt/celsius /opt/venv/bin/python -m celsius_model export \
      --output /tmp/models/f2c --version "${MODEL_VERSION}"

FROM ${BASE}
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="celsius-model" \
      org.opencontainers.image.description="SavedModel f2c (Fahrenheit to Celsius) under /models/f2c/<version>/" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=export --chown=10001:10001 /tmp/models /models
# /shared: where an init container copies the model. Owned by the runtime user, so an empty
# Docker volume mounted there takes that ownership (Kubernetes: an emptyDir with fsGroup).
RUN mkdir /shared && chown 10001:10001 /shared
USER 10001:10001
CMD ["sh", "-c", "rm -rf /shared/f2c && cp -R /models/f2c /shared/ && ls -R /shared"]
