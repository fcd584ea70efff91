/**
 * Bounded waiting for tests. `until` polls a condition that has no event to listen to (a
 * counter in another process); the bound only ends a broken run, with a message saying what
 * never happened. Never use it as a sleep: a test waits for the thing itself.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Poll `check` until it returns a value other than undefined, or fail after `ms`; `context`
 * adds what helps to explain a failure (a child's log tail, say) to the message.
 */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = 10_000,
  everyMs = 20,
  context: () => string = () => "",
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      assert.fail(`timed out after ${ms} ms waiting for ${what}${last === undefined ? "" : `: ${String(last)}`}\n${context()}`.trimEnd());
    await sleep(everyMs);
  }
}
