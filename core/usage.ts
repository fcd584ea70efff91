/**
 * The one token-usage extractor: counts read from raw response bytes (a JSON message, or
 * a run of SSE events) without parsing them: the last
 * `"<key>":<digits>` in the buffer. A quote inside a JSON string is always escaped, so
 * text content cannot fake a key; Anthropic writes `usage` after `content`, so the last
 * occurrence is usage's even when a tool input has a same-named field.
 */
const KEYS = new Map<string, Buffer>();

export function lastNumberField(buf: Uint8Array, key: string): number {
  let needle = KEYS.get(key);
  if (needle === undefined) {
    needle = Buffer.from(`"${key}":`);
    KEYS.set(key, needle);
  }
  const b = buf instanceof Buffer ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const at = b.lastIndexOf(needle);
  if (at < 0) return -1;
  let i = at + needle.length;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  let n = 0,
    digits = 0;
  while (i < b.length && b[i]! >= 0x30 && b[i]! <= 0x39) {
    n = n * 10 + (b[i]! - 0x30);
    i++;
    digits++;
  }
  return digits === 0 ? -1 : n;
}

/** Where usage lands (RequestCtx has these fields; -1 = not reported). */
export interface UsageFields {
  inputTokens: number;
  outputTokens: number;
  cacheCreationTokens: number;
  cacheReadTokens: number;
}

/**
 * Read the usage counts in `buf` into `into`, keeping a field's earlier value when `buf`
 * does not carry it: a JSON reply is read once; SSE runs are read as they pass
 * (message_start carries the input, each message_delta the running output).
 */
export function readUsage(buf: Uint8Array, into: UsageFields): void {
  const i = lastNumberField(buf, "input_tokens");
  if (i >= 0) into.inputTokens = i;
  const o = lastNumberField(buf, "output_tokens");
  if (o >= 0) into.outputTokens = o;
  const cw = lastNumberField(buf, "cache_creation_input_tokens");
  if (cw >= 0) into.cacheCreationTokens = cw;
  const cr = lastNumberField(buf, "cache_read_input_tokens");
  if (cr >= 0) into.cacheReadTokens = cr;
}
