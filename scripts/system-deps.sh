#!/usr/bin/env bash
# The system programs `npm test` needs beside Node (run as `pretest`, and by .ci/run through
# `npm test`): the one place that knows them. When one is missing it installs the Debian
# packages with apt-get if it runs as root; otherwise it stops at once with one line saying
# what to install, instead of letting twenty tests fail one by one.
#
#   bwrap         bubblewrap    the MCP workspace sandbox (test/server/mcp/)
#   promtool      prometheus    metrics and alert-rule checks (test/k8s/, test/server/)
#   prometheus    prometheus    the live alert-rule test runs a real Prometheus (test/k8s/)
#   git           git           the MCP git tools
#   redis-server  redis-server  shared state across replicas
#   pg_ctlcluster postgresql    fleet mode's ledger (the tests run initdb/pg_ctl from /usr/lib/postgresql/*/bin)
#   prlimit       util-linux    the sandbox's process, memory and CPU limits
#   chromium      chromium      the dashboard's browser tests (test/server/dashboard.test.ts)
set -euo pipefail

cmds=(bwrap promtool prometheus git redis-server prlimit chromium pg_ctlcluster)
pkgs=(bubblewrap prometheus prometheus git redis-server util-linux chromium postgresql)

missing_pkgs() {
  local i out=" "
  for i in "${!cmds[@]}"; do
    if ! command -v "${cmds[$i]}" >/dev/null 2>&1; then
      case "$out" in *" ${pkgs[$i]} "*) ;; *) out+="${pkgs[$i]} " ;; esac
    fi
  done
  out="${out# }"
  echo "${out% }"
}

missing=$(missing_pkgs)
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "npm test needs system packages that are missing: ${missing} (install them, e.g. sudo apt-get install -y ${missing})" >&2
  exit 1
fi

echo "== apt-get install ${missing}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
apt-get install -y -qq --no-install-recommends ${missing} >/dev/null

# The prometheus, redis-server and postgresql packages may start their services (:9090, :6379,
# :5432); the tests start their own on loopback ports, so stop whatever the install started.
for svc in prometheus redis-server postgresql; do
  case " ${missing} " in *" ${svc} "*) ;; *) continue ;; esac
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/${svc}" ]; then
    "/etc/init.d/${svc}" stop >/dev/null 2>&1 || true
  fi
done

still=$(missing_pkgs)
if [ -n "$still" ]; then
  echo "npm test needs system packages that apt-get did not provide: ${still}" >&2
  exit 1
fi
