/**
 * Stage results as small integers, so a stage returns without allocating: CONTINUE,
 * PENDING (the stage finishes later and resumes the pipeline) or a catalogue error by
 * number. Numbers follow the catalogue's order and are only meaningful inside a process.
 */
import { CATALOGUE, type ErrorCode } from "../errors.js";

export const CONTINUE = 0;
export const PENDING = -1;

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
