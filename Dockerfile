# Image for the fleetgate worker / executor / CLI (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gates ./gates
COPY streams ./streams
COPY schemas ./schemas
COPY policies ./policies
# Editable: the codecs read schemas/ from the source tree, the one place wire formats are defined.
RUN pip install --no-cache-dir -e .
ENTRYPOINT ["fleetgate"]
