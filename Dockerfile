# Image for the fleetgate worker / executor / CLI (used by docker-compose.yml).
# Stage 1 builds the wheel from the source tree; stage 2 installs only that wheel, so the image
# runs what a user's `pip install fleetgate-*.whl` runs (schemas and policies are package data).
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir "build>=1.2,<2"
COPY pyproject.toml README.md ./
COPY gates ./gates
COPY streams ./streams
# streams/schemas and streams/policies are symlinks to these: the wheel build copies them in.
COPY schemas ./schemas
COPY policies ./policies
RUN python -m build --wheel --outdir /dist .

FROM python:3.11-slim
COPY --from=build /dist/ /dist/
RUN pip install --no-cache-dir /dist/fleetgate-*.whl && rm -rf /dist
RUN useradd --create-home --uid 10001 fleetgate
USER fleetgate
WORKDIR /home/fleetgate
# Owned by the user, so a named volume mounted here (docker-compose.yml's demo) is writable.
RUN mkdir data
ENTRYPOINT ["fleetgate"]
