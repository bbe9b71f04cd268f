# Image for the fleetgate worker / executor / CLI (used by docker-compose.yml).

# Build stage: the native decoder (native/) as a wheel; the final image needs no Rust.
FROM python:3.11-slim AS native
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
RUN pip install --no-cache-dir "maturin>=1.5,<2"
COPY native /native
RUN maturin build --release -m /native/Cargo.toml -o /wheels

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gates ./gates
COPY streams ./streams
COPY schemas ./schemas
COPY policies ./policies
# Editable: the codecs read schemas/ from the source tree, the one place wire formats are defined.
RUN pip install --no-cache-dir -e .
COPY --from=native /wheels /wheels
RUN pip install --no-cache-dir /wheels/fleetgate_native-*.whl && rm -rf /wheels
ENTRYPOINT ["fleetgate"]
