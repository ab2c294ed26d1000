# The service image. Same pins as a local install (requirements.lock).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMGSEARCH_DATA_DIR=/data

# A CJK font for the Chinese captions of result pictures (GET /img/search.png).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei && rm -rf /var/lib/apt/lists/*

WORKDIR /srv
# Dependencies first, so code changes do not reinstall torch.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY app ./app
COPY operations ./operations
COPY adapters ./adapters
COPY config ./config
RUN pip install --no-deps . && mkdir -p /data

EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=5 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
# IMGSEARCH_WORKERS=N runs N service processes (with a Milvus server and MySQL, as docker-compose.yml sets up).
CMD ["imgsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
