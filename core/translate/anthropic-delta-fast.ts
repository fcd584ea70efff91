/**
 * Fast path for the hottest Anthropic stream events, `content_block_delta` with a
 * `text_delta`, `thinking_delta` or `input_json_delta`: their value is cut out of the raw
 * event text as the JSON string literal it already is, and spliced into the OpenAI chunk
 * without JSON.parse + JSON.stringify. Only the exact shape Anthropic writes qualifies
 * (fixed key order, nothing after the value); anything else returns NONE and goes to the
 * full parser. test/core/translate/fast-delta.test.ts compares the two paths.
 */

export const NONE = 0,
  TEXT = 1,
  THINKING = 2,
  INPUT_JSON = 3;

const PREFIX = '{"type":"content_block_delta","index":';
const MIDS: readonly [number, string][] = [
  [TEXT, ',"delta":{"type":"text_delta","text":'],
  [THINKING, ',"delta":{"type":"thinking_delta","thinking":'],
  [INPUT_JSON, ',"delta":{"type":"input_json_delta","partial_json":'],
];

/** Where the last match's value is: a JSON string literal, quotes included. */
export const fastDelta = { index: 0, raw: "" };

/** The kind of a fast-path delta event (its index and raw value in `fastDelta`), or NONE. */
export function parseFastDelta(data: string): number {
  if (!data.startsWith(PREFIX) || !data.endsWith('"}}')) return NONE;
  let i = PREFIX.length,
    index = 0,
    digits = 0;
  for (let c = data.charCodeAt(i); c >= 0x30 && c <= 0x39; c = data.charCodeAt(++i)) {
    index = index * 10 + (c - 0x30);
    digits++;
  }
  if (digits === 0 || digits > 6) return NONE;
  for (let m = 0; m < MIDS.length; m++) {
    const [kind, mid] = MIDS[m]!;
    if (!data.startsWith(mid, i)) continue;
    const start = i + mid.length,
      end = data.length - 2; // the literal is data[start, end)
    if (data.charCodeAt(start) !== 0x22 || !isOneStringLiteral(data, start, end)) return NONE;
    fastDelta.index = index;
    fastDelta.raw = data.slice(start, end);
    return kind;
  }
  return NONE;
}

/** data[start] is a quote: is data[start, end) exactly one JSON string literal with no raw control characters? */
function isOneStringLiteral(s: string, start: number, end: number): boolean {
  for (let i = start + 1; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) {
      i++; // an escape: JSON.parse of the whole event already vouched for it upstream; the pair stays intact
      continue;
    }
    if (c === 0x22) return i === end - 1;
    if (c < 0x20) return false;
  }
  return false;
}
