# The server shape: one banatie-local instance per container. Settings come from
# BANATIE_* environment variables (see config.example.toml), data from /data.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY banatie_local ./banatie_local
RUN pip install --no-cache-dir . && useradd --system --home /data banatie \
    && mkdir -p /data && chown banatie /data
USER banatie
ENV BANATIE_SERVER_HOST=0.0.0.0 \
    BANATIE_SERVER_PORT=3000
EXPOSE 3000
VOLUME /data
CMD ["banatie-local", "--data-dir", "/data", "serve"]
