/**
 * A throw-away PostgreSQL cluster for tests (fleet mode): `initdb` into a temp directory as the
 * `postgres` user (PostgreSQL refuses to run as root), started with `pg_ctl` on a free loopback
 * port, and removed by `destroy()`. `stop()`/`start()` take the same cluster down and up, for
 * outage tests. A missing package fails with one clear message.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "./free-port.js";

export interface PgHandle {
  /** postgres://postgres:…@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  stop(): void;
  start(): void;
  destroy(): void;
}

function pgBin(name: string): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const p = join(root, v, "bin", name);
    if (existsSync(p)) return p;
  }
  throw new Error(`PostgreSQL's ${name} was not found under ${root}/*/bin (install Debian's postgresql package)`);
}

/** Run a PostgreSQL program as the postgres user when we are root (as root it refuses to run). */
function asPg(cmd: string, args: string[]): void {
  const root = userInfo().uid === 0;
  const r = root
    ? spawnSync("runuser", ["-u", "postgres", "--", cmd, ...args], { encoding: "utf8" })
    : spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.error?.message ?? ""}${r.stderr}${r.stdout}`);
}

export async function startPostgres(): Promise<PgHandle> {
  const initdb = pgBin("initdb");
  const pgCtl = pgBin("pg_ctl");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-pg-"));
  const data = join(dir, "data");
  if (userInfo().uid === 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  const port = await freePort();
  asPg(initdb, ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
  const start = () => asPg(pgCtl, ["-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "-t", "30", "start"]);
  const stop = () => asPg(pgCtl, ["-D", data, "-m", "fast", "-w", "-t", "30", "stop"]);
  start();
  let gone = false;
  return {
    url: `postgres://postgres:unused-password@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    destroy() {
      if (gone) return;
      gone = true;
      try {
        stop();
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
