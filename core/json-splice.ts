/**
 * Replace the top-level "model" value in a raw JSON body without re-serialising it, so
 * everything else (thinking signatures, key order, escapes, unknown fields) reaches the
 * upstream byte for byte. A small scanner finds the value's byte range; when it cannot
 * (unusual escapes in the key), the caller falls back to re-serialising (`spliceModelSlow`).
 */

const QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d;
const COLON = 0x3a,
  COMMA = 0x2c;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(b: Buffer, i: number): number {
  while (i < b.length && isWs(b[i]!)) i++;
  return i;
}

/**
 * i at an opening quote; returns the index after the closing quote, or -1. Jumps from
 * quote to quote natively (message text is most of a body); a quote preceded by an odd
 * run of backslashes is escaped.
 */
function skipString(b: Buffer, i: number): number {
  let from = i + 1;
  for (;;) {
    const q = b.indexOf(QUOTE, from);
    if (q < 0) return -1;
    let k = q - 1;
    while (k >= from && b[k] === BACKSLASH) k--;
    if (((q - 1 - k) & 1) === 0) return q + 1;
    from = q + 1;
  }
}

/** Skip any JSON value starting at i; returns the index after it, or -1. */
function skipValue(b: Buffer, i: number): number {
  const c = b[i];
  if (c === QUOTE) return skipString(b, i);
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0;
    while (i < b.length) {
      const d = b[i]!;
      if (d === QUOTE) {
        i = skipString(b, i);
        if (i < 0) return -1;
        continue;
      }
      if (d === LBRACE || d === LBRACKET) depth++;
      else if (d === RBRACE || d === RBRACKET) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  // number, true, false, null
  while (i < b.length) {
    const d = b[i]!;
    if (d === COMMA || d === RBRACE || d === RBRACKET || isWs(d)) return i;
    i++;
  }
  return i;
}

const MODEL = [0x22, 0x6d, 0x6f, 0x64, 0x65, 0x6c, 0x22]; // "model"

function isModelKey(b: Buffer, start: number, end: number): boolean {
  if (end - start !== MODEL.length) return false;
  for (let k = 0; k < MODEL.length; k++) if (b[start + k] !== MODEL[k]) return false;
  return true;
}

/**
 * Byte range [start, end) of the top-level "model" string value, quotes included, or null
 * when the body is not an object with a plainly written "model" string key.
 */
export function findModelRange(b: Buffer): [number, number] | null {
  let i = skipWs(b, 0);
  if (b[i] !== LBRACE) return null;
  i = skipWs(b, i + 1);
  // The last occurrence wins, as in JSON.parse: splicing an earlier duplicate would let a
  // client route on one model and reach the upstream with another.
  let found: [number, number] | null = null;
  while (i < b.length && b[i] !== RBRACE) {
    if (b[i] !== QUOTE) return null;
    const ks = i;
    i = skipString(b, i);
    if (i < 0) return null;
    const ke = i;
    // An escaped key might decode to "model": leave such bodies to the slow path.
    for (let k = ks + 1; k < ke - 1; k++) if (b[k] === BACKSLASH) return null;
    i = skipWs(b, i);
    if (b[i] !== COLON) return null;
    i = skipWs(b, i + 1);
    const vs = i;
    i = skipValue(b, i);
    if (i < 0) return null;
    if (isModelKey(b, ks, ke)) found = b[vs] === QUOTE ? [vs, i] : null;
    i = skipWs(b, i);
    if (b[i] === COMMA) i = skipWs(b, i + 1);
    else if (b[i] !== RBRACE) return null;
  }
  return b[i] === RBRACE ? found : null;
}

/**
 * Whether more than one top-level key of a JSON object body decodes to "model". JSON.parse
 * keeps the last; an upstream may keep the first, so the parse stage refuses such a body.
 * `text` is `body` decoded, the string JSON.parse accepted (the parse stage's own).
 *
 * A key can spell a letter of "model" only literally or as `\u006X` (all five letters are
 * U+006x; JSON has no other escape for a letter), so a body with at most one literal
 * `"model"` and no `\u006` has at most one such key. The native search jumps between
 * occurrences of a needle's first character, so each is found through a substring that
 * starts with a character rare in message text, `006` and `model"` (on the 105 KB Claude
 * Code body 3.5 and 16 µs, where `\u006` and `"model"` cost 15 and 22: docs/performance.md),
 * and in the string (V8's search has no per-call binding cost; a small body's check takes
 * ~50 ns). Otherwise, e.g. a tool schema with a "model" property, the top level is scanned.
 */
export function duplicateModelKey(text: string, body: Buffer): boolean {
  for (let i = text.indexOf("006"); i >= 0; i = text.indexOf("006", i + 3))
    if (text.charCodeAt(i - 1) === U && text.charCodeAt(i - 2) === BACKSLASH) return topLevelModelKeys(body) > 1;
  let n = 0;
  for (let i = text.indexOf('model"'); i >= 0; i = text.indexOf('model"', i + 6))
    if (text.charCodeAt(i - 1) === QUOTE && ++n > 1) return topLevelModelKeys(body) > 1;
  return false;
}

const U = 0x75;

/** How many top-level keys decode to "model", up to 2: the top level walked, strings skipped natively, escaped keys decoded. */
function topLevelModelKeys(b: Buffer): number {
  let i = skipWs(b, 0);
  if (b[i] !== LBRACE) return 0;
  i = skipWs(b, i + 1);
  let n = 0;
  while (i < b.length && b[i] !== RBRACE) {
    const ks = i;
    i = skipString(b, i);
    if (i < 0) return n;
    // Any spelling of "model" is 7 to 32 bytes long, quotes included (`\u006d` is 6 for 1).
    const len = i - ks;
    if ((len === 7 ? isModelKey(b, ks, i) : len <= 32 && escapedModel(b, ks, i)) && ++n > 1) return n;
    i = skipWs(b, i);
    i = skipValue(b, skipWs(b, i + 1));
    if (i < 0) return n;
    i = skipWs(b, i);
    if (b[i] === COMMA) i = skipWs(b, i + 1);
  }
  return n;
}

/** Whether the key at [ks, ke) (quotes included) has an escape and decodes to "model". */
function escapedModel(b: Buffer, ks: number, ke: number): boolean {
  for (let k = ks + 1; k < ke - 1; k++) if (b[k] === BACKSLASH) return JSON.parse(b.toString("utf8", ks, ke)) === "model";
  return false;
}

/** The body with its model replaced: spliced when possible, re-serialised otherwise. */
export function spliceModel(raw: Buffer, parsed: Record<string, unknown>, model: string): Buffer {
  const r = findModelRange(raw);
  if (r === null) return spliceModelSlow(parsed, model);
  return Buffer.concat([raw.subarray(0, r[0]), Buffer.from(JSON.stringify(model)), raw.subarray(r[1])]);
}

/** The fallback: re-serialise the parsed body with the new model. */
export function spliceModelSlow(parsed: Record<string, unknown>, model: string): Buffer {
  return Buffer.from(JSON.stringify({ ...parsed, model }));
}
