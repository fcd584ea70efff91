/**
 * One stored answer, as bytes: the same layout in memory, in a message between threads and
 * in Redis. A 28-byte header (format version, JSON or SSE, when it was stored, the usage it
 * cost: input, output, cache-write and cache-read tokens), then the body exactly as the client
 * got it: the JSON reply, or the SSE events with their framing.
 */
export const KIND_JSON = 0,
  KIND_SSE = 1;
const VERSION = 1;
export const HEADER_BYTES = 28;

export interface EntryMeta {
  kind: number;
  storedAt: number;
  input: number;
  output: number;
  cacheWrite: number;
  cacheRead: number;
}

const u32 = (n: number): number => (n > 0 && n < 0xffffffff ? Math.round(n) : 0);

/**
 * Header + body parts, copied into one buffer with an ArrayBuffer of its own (never Node's
 * shared pool), so it can be transferred to another thread.
 */
export function encodeEntry(meta: EntryMeta, parts: readonly Uint8Array[], bodyBytes: number): Buffer {
  const out = Buffer.from(new ArrayBuffer(HEADER_BYTES + bodyBytes));
  out[0] = VERSION;
  out[1] = meta.kind;
  out[2] = 0;
  out[3] = 0;
  out.writeDoubleLE(meta.storedAt, 4);
  out.writeUInt32LE(u32(meta.input), 12);
  out.writeUInt32LE(u32(meta.output), 16);
  out.writeUInt32LE(u32(meta.cacheWrite), 20);
  out.writeUInt32LE(u32(meta.cacheRead), 24);
  let o = HEADER_BYTES;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/** null for bytes that are not an entry of this format (a foreign or older Redis value). */
export function entryMeta(b: Uint8Array): EntryMeta | null {
  if (b.byteLength < HEADER_BYTES || b[0] !== VERSION || (b[1] !== KIND_JSON && b[1] !== KIND_SSE)) return null;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    kind: b[1]!,
    storedAt: v.getFloat64(4, true),
    input: v.getUint32(12, true),
    output: v.getUint32(16, true),
    cacheWrite: v.getUint32(20, true),
    cacheRead: v.getUint32(24, true),
  };
}

export function entryBody(b: Uint8Array): Uint8Array {
  return b.subarray(HEADER_BYTES);
}
