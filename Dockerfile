# syntax=docker/dockerfile:1
# Production image: one image, every role. The role is the command:
#   docker run IMAGE api | ingest mqtt | alerts | migrate | seed | simulate traffic
# docker-compose.yml runs the production shape from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# uv from PyPI, pinned to the version that wrote uv.lock.
RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
# (README.md is the project's `readme`: the build backend needs it for the metadata.)
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# The code and the deployment data. One COPY per directory: `COPY a b ./` would merge
# their contents into /app instead of keeping the directories.
COPY ioc/ ./ioc/
COPY ingest/ ./ingest/
COPY streams/ ./streams/
COPY simulators/ ./simulators/
COPY frontend/ ./frontend/
COPY config/ ./config/

# The project itself, installed editable on purpose: ioc.config finds config/ and frontend/
# next to the `ioc` package (PROJECT_ROOT), i.e. in /app, not in site-packages.
RUN uv sync --frozen --no-dev \
    && /app/.venv/bin/python -m compileall -q ioc ingest streams simulators

# Unprivileged at run time; the code is owned by root and read-only for the app.
RUN groupadd --system --gid 10001 ioc \
    && useradd --system --uid 10001 --gid ioc --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin ioc
USER ioc:ioc

ENV PATH="/app/.venv/bin:${PATH}" \
    IOC_ENVIRONMENT=production \
    IOC_LOG_FORMAT=json \
    IOC_API_HOST=0.0.0.0 \
    IOC_STATE_DIR=/tmp/ioc-state

EXPOSE 8000
ENTRYPOINT ["ioc"]
CMD ["api"]
