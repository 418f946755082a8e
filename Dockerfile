# The barfast image for Kubernetes runs (docs/kubernetes.md): `docker build -t barfast .`
# Two stages: the Cython core is compiled in the first, the second holds only the installed wheel.
FROM python:3.11-slim AS build
# gcc and OpenSSL's headers for the native core (setup.py; https links libssl, which the slim
# base already has at run time); pyzmq, numpy and hdrhistogram come as wheels. Not pinned
# (DL3008): the base image's Debian release fixes the compiler, and its point releases replace
# the exact versions a pin would name.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md MANIFEST.in ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin barfast
# the manifests' runAsUser; the pods mount their keys, files and results read-only or in volumes
USER 10001:10001
WORKDIR /tmp
ENV PYTHONUNBUFFERED=1
# no listening port by default: the coordinator binds 5555 only when its manifest says so
ENTRYPOINT ["barfast"]
CMD ["--help"]
