# syntax=docker/dockerfile:1
# Portcullis container image: build with the dev toolchain, ship only dist/ and the
# production dependencies on a slim Node base, as a non-root user, with tini as PID 1.
#
#   docker build -t portcullis:0.1.0 .
#   docker run --rm -p 8080:8080 -e MODEL_PROVIDER=mock portcullis:0.1.0
#
# Secrets (provider keys, GATEWAY_API_KEYS) are never part of the image: pass them at run
# time (-e / --env-file, or Kubernetes Secret refs, see k8s/ and docs/operations.md).
#
# The base is pinned by digest, so a rebuild gets the same bytes. This digest is the
# linux/amd64 image of node:20-slim as published on 2026-05-01 (taken from public
# material, not pulled from here): check and refresh it with
#   docker buildx imagetools inspect node:20-slim
# and use the index digest it prints for a multi-arch build.
#
# Node 20 is past its end of life (April 2026). It stays the default because the only
# uWebSockets.js build that loads on the project's build machines (glibc 2.36) has Node 20
# binaries (package.json aliases it). To move to Node 22 or 24, build on a base with glibc
# >= 2.38 (Debian trixie) and swap in the @btc-vision/uwebsockets.js build, which has
# binaries for Node 22-26:
#   docker build \
#     --build-arg NODE_IMAGE=node:24-trixie-slim@sha256:<digest> \
#     --build-arg UWS_PACKAGE=@btc-vision/uwebsockets.js@20.57.0 -t portcullis:0.1.0-node24 .
ARG NODE_IMAGE=node:20-slim@sha256:3d0f05455dea2c82e2f76e7e2543964c30f6b7d673fc1a83286736d44fe4c41c
# Empty: the uWebSockets.js of package-lock.json. Otherwise an npm spec that replaces it.
ARG UWS_PACKAGE=

# ---- build: full install (typia transform via ts-patch), compile TypeScript ----------
FROM ${NODE_IMAGE} AS build
ARG UWS_PACKAGE
WORKDIR /app
# Toolchain for better-sqlite3 if no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund \
 && if [ -n "$UWS_PACKAGE" ]; then npm install --no-save --no-audit --no-fund "uWebSockets.js@npm:$UWS_PACKAGE"; fi
COPY core ./core
COPY server ./server
COPY workers ./workers
# Only the runtime sources are in the build context's copy, so tsc emits only them.
RUN npx tsc -p tsconfig.json \
 && test -f dist/server/main.js

# ---- deps: production dependencies only ---------------------------------------------
FROM ${NODE_IMAGE} AS deps
ARG UWS_PACKAGE
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script needs ts-patch, a dev dependency. Then build
# the one native dependency that needs its install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && if [ -n "$UWS_PACKAGE" ]; then npm install --no-save --omit=dev --ignore-scripts --no-audit --no-fund "uWebSockets.js@npm:$UWS_PACKAGE"; fi \
 && npm rebuild better-sqlite3 \
 && node -e "require('uWebSockets.js')" \
 && npm cache clean --force

# ---- runtime -------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini: PID 1 that reaps the sandbox's orphaned children and forwards signals to node.
# bubblewrap: the sandbox for the MCP workspace commands (docs/mcp.md).
# npm, npx and corepack are removed: nothing installs packages at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
 && ! command -v npm
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
# Health is on METRICS_PORT when that is set (Kubernetes: 9090), else on PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.METRICS_PORT||process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The gateway drains on SIGTERM (readiness 503, in-flight requests finish, exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server/main.js"]
