# syntax=docker/dockerfile:1
# Gatehouse: multi-stage, non-root, Node 24. Node runs the TypeScript sources directly.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY sdk/package.json sdk/package.json
# Production dependencies only; native modules (@node-rs/argon2) ship prebuilt in their npm packages.
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    GATEHOUSE_HOST=0.0.0.0 \
    GATEHOUSE_PORT=8080 \
    GATEHOUSE_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY sdk ./sdk
# Warm Node's compile cache (bin/gatehouse.js) at build time, so the server starts without
# compiling TypeScript (and without the ~18 MB compiler) even though `node` cannot write it.
RUN node bin/gatehouse.js serve --help > /dev/null
# The data directory (SQLite mode) belongs to the unprivileged `node` user (uid 1000).
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# Liveness; use /readyz for readiness (it checks storage).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# SIGTERM reaches node directly (no shell): in-flight requests finish and counters flush.
# The young-generation cap is the shebang's of bin/gatehouse.js (see docs/deployment.md).
ENTRYPOINT ["node", "--max-semi-space-size=4", "--max-old-space-size=1024", "--no-allocation-site-pretenuring", "bin/gatehouse.js"]
CMD ["serve"]
