/**
 * Stage results as small integers, so a stage returns without allocating: CONTINUE or a
 * catalogue error by number. Numbers follow the catalogue's order and are only meaningful
 * inside a process. (Stages are synchronous; the one wait, reading the body, sits between
 * the head and body lists. A body stage that must wait answers WAIT: the server parks the
 * request and later runs `Pipeline.resumeBody`, which starts again at that stage; the one
 * such stage is the fleet budget reservation while its lease is renewed, server/fleet/budget-park.ts.)
 */
import { CATALOGUE, type ErrorCode } from "../errors.js";

export const CONTINUE = 0;
/** Not admitted yet, not refused: the server waits and resumes the request (never an error number). */
export const WAIT = -1;

const CODES = Object.keys(CATALOGUE) as ErrorCode[];
const NUMBERS = new Map<string, number>(CODES.map((c, i) => [c, i + 1]));

/** The number a stage returns to refuse with `code` (build it once, at module load). */
export function codeNumber(code: ErrorCode): number {
  return NUMBERS.get(code)!;
}

/** The catalogue code for a stage's result (> 0). */
export function codeOf(n: number): ErrorCode {
  const c = CODES[n - 1];
  if (c === undefined) throw new Error(`not an error result: ${n}`);
  return c;
}
