# Image for the fleetgate worker / executor / CLI (used by docker-compose.yml).
# Stage 1 builds the fleetgate wheel from the source tree, with the fold compiled by mypyc
# (gates/compiled.py; a platform wheel); stage 2 the native decoder (native/) as a wheel;
# stage 3 installs only those wheels, so the image runs what a user's
# `pip install fleetgate-*.whl fleetgate_native-*.whl` runs (schemas and policies are package
# data) and needs neither a C compiler nor Rust.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# mypyc comes with mypy; it type-checks what it compiles (PyYAML's stubs for gates/policy.py)
RUN pip install --no-cache-dir "setuptools>=70.1" "mypy>=2,<3" types-PyYAML
COPY pyproject.toml setup.py README.md ./
COPY gates ./gates
COPY streams ./streams
# streams/schemas and streams/policies are symlinks to these: the wheel build copies them in.
COPY schemas ./schemas
COPY policies ./policies
RUN FLEETGATE_COMPILE=1 pip wheel --no-cache-dir --no-deps --no-build-isolation -w /dist .

FROM python:3.11-slim AS native
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
RUN pip install --no-cache-dir "maturin>=1.5,<2"
COPY native /native
RUN maturin build --release -m /native/Cargo.toml -o /wheels

FROM python:3.11-slim
COPY --from=build /dist/ /dist/
COPY --from=native /wheels/ /dist/
RUN pip install --no-cache-dir /dist/fleetgate-*.whl /dist/fleetgate_native-*.whl && rm -rf /dist
RUN useradd --create-home --uid 10001 fleetgate
USER fleetgate
WORKDIR /home/fleetgate
# Owned by the user, so a named volume mounted here (docker-compose.yml's demo) is writable.
RUN mkdir data
ENTRYPOINT ["fleetgate"]
