# celsius/model: the exported SavedModel under /models/f2c/<version>/, made by the project's one
# export command in the model-server image, on a small base. Meant for an init container
# that copies it where TF Serving reads it:
#   cp -r /models/f2c /shared/    (then TF Serving: --model_base_path=/shared/f2c)
# Build context: model/ (after celsius/model-server:${VERSION} was built).
#   DOCKER_BUILDKIT=0 docker build -f model/model.Dockerfile -t celsius/model:dev model
ARG VERSION=dev
ARG BASE=debian:bookworm-slim
FROM celsius/model-server:${VERSION} AS export
ARG MODEL_VERSION=1
RUN python -m celsius_model export --output /tmp/models/f2c --version "${MODEL_VERSION}"

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
