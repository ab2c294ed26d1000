# Two images from one file, same pins as a local install (requirements.lock):
#   serve  (the default, last stage): the service and its OCR on ONNX Runtime, no torch (~0.7 GB of Python packages)
#   export (--target export): the same plus PyTorch and cn_clip, to make the ONNX exports the service serves:
#          docker run -v ./data/models:/data/models <image> imgsearch warmup   (docker-compose.yml does this)
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMGSEARCH_DATA_DIR=/data

# A CJK font for the Chinese captions of result pictures (GET /img/search.png); libGL and GLib for OpenCV, which
# the OCR extra (rapidocr-onnxruntime) imports.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv
# Dependencies first (from the project's own list, pinned by the lock), so code changes do not reinstall them.
COPY pyproject.toml requirements.lock README.md ./
RUN mkdir -p app operations adapters config \
    && pip install -c requirements.lock ".[ocr,video,faces]" \
    && pip uninstall -y cn-image-search

COPY app ./app
COPY operations ./operations
COPY adapters ./adapters
COPY config ./config
RUN pip install --no-deps . && mkdir -p /data

FROM base AS export
RUN pip install -c requirements.lock ".[export]"
CMD ["imgsearch", "warmup"]

FROM base AS serve
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=5 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"
# IMGSEARCH_WORKERS=N runs N service processes (with a Milvus server and MySQL, as docker-compose.yml sets up).
CMD ["imgsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
