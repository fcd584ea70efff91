# syntax=docker/dockerfile:1
# Portcullis container image: build with the dev toolchain, ship only dist/ and the
# production dependencies on node:20-slim, as a non-root user.
#
#   docker build -t portcullis:0.1.0 .
#   docker run --rm -p 8080:8080 -e MODEL_PROVIDER=mock portcullis:0.1.0
#
# Secrets (provider keys, GATEWAY_API_KEYS) are never part of the image: pass them at run
# time (-e / --env-file, or Kubernetes Secret refs, see k8s/ and docs/operations.md).

ARG NODE_IMAGE=node:20-slim

# ---- build: full install (typia transform via ts-patch), compile TypeScript ----------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Toolchain for better-sqlite3 if no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY core ./core
COPY server ./server
COPY workers ./workers
# Only the runtime sources are in the build context's copy, so tsc emits only them.
RUN npx tsc -p tsconfig.json \
 && test -f dist/server/main.js

# ---- deps: production dependencies only ---------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script needs ts-patch, a dev dependency. Then build
# the one native dependency that needs its install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 \
 && npm cache clean --force

# ---- runtime -------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# bubblewrap: the sandbox for the MCP workspace commands (docs/mcp.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
# A dedicated unprivileged user (numeric, so runAsNonRoot can verify it).
RUN groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin portcullis \
 && mkdir -p /app/data \
 && chown 10001:10001 /app/data
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root package.json ./
# The SQLite ledger lives in /app/data (a volume in Kubernetes; the root filesystem is read-only there).
VOLUME ["/app/data"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The gateway drains on SIGTERM (readiness 503, in-flight requests finish, exit 0).
STOPSIGNAL SIGTERM
CMD ["node", "dist/server/main.js"]
