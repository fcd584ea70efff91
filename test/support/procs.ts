/**
 * Live processes seen from /proc (no `ps`, which slim images lack): for tests that wait
 * until a command has started or check that nothing of a run survived.
 */
import { readdirSync, readFileSync } from "node:fs";

/** "pid: argv joined by spaces" of every live process whose argv contains `needle`. */
export function processesMatching(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    } catch {
      continue; // it exited while we listed
    }
    if (cmd.includes(needle)) out.push(`${pid}: ${cmd}`);
  }
  return out;
}
