/**
 * Cuts an upstream SSE byte stream into runs of whole events, so a failure later can be
 * reported with a clean `event: error` instead of a torn frame. Linear in the bytes: a
 * partial event is kept as a list of chunks and joined once, when its blank line arrives,
 * and only each new chunk (plus the last 3 bytes before it, for a blank line split across
 * two chunks) is scanned. An event still incomplete after `maxEventBytes` is an overflow:
 * the caller ends the stream, so a reply that never sends a blank line cannot grow memory.
 */
const LFLF = Buffer.from("\n\n");
const CRLFCRLF = Buffer.from("\r\n\r\n");
const NONE = Buffer.alloc(0);

/** Index just after the last blank line (`\n\n` or `\r\n\r\n`) in `b`, or -1. */
function lastEventEnd(b: Buffer): number {
  const a = b.lastIndexOf(LFLF),
    c = b.lastIndexOf(CRLFCRLF);
  const ea = a < 0 ? -1 : a + 2,
    ec = c < 0 ? -1 : c + 4;
  return ea > ec ? ea : ec;
}

export class SseFramer {
  private readonly maxEventBytes: number;
  private parts: Buffer[] = [];
  private partLen = 0;
  /** The last (up to 3) bytes held, for a blank line split across chunks. */
  private tail: Buffer = NONE;
  /** Set once a partial event grew past maxEventBytes; the framer then refuses more. */
  overflow = false;

  constructor(maxEventBytes: number) {
    this.maxEventBytes = maxEventBytes;
  }

  /** Bytes of the incomplete event held back. */
  get pendingBytes(): number {
    return this.partLen;
  }

  /** Feed one chunk; returns the whole events it completed (with what was held), or null. */
  push(chunk: Buffer): Buffer | null {
    if (this.overflow || chunk.length === 0) return null;
    let cut = lastEventEnd(chunk);
    if (cut < 3 && this.partLen > 0) {
      // A blank line may straddle the boundary: look at 3 bytes on each side.
      const k = chunk.length < 3 ? chunk.length : 3;
      const win = Buffer.concat([this.tail, chunk.subarray(0, k)]);
      const e = lastEventEnd(win) - (win.length - k);
      if (e > cut) cut = e;
    }
    if (cut <= 0) {
      this.hold(chunk);
      return null;
    }
    const head = chunk.subarray(0, cut);
    const out = this.partLen === 0 ? head : Buffer.concat([...this.parts, head], this.partLen + cut);
    this.parts = [];
    this.partLen = 0;
    this.tail = NONE;
    if (cut < chunk.length) this.hold(chunk.subarray(cut));
    return out;
  }

  /** Whatever is held (an unterminated last event), emptied; null when nothing is. */
  rest(): Buffer | null {
    if (this.partLen === 0) return null;
    const out = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partLen);
    this.parts = [];
    this.partLen = 0;
    this.tail = NONE;
    return out;
  }

  private hold(b: Buffer): void {
    this.parts.push(Buffer.from(b)); // a copy: the caller's buffer may be reused
    this.partLen += b.length;
    this.tail = b.length >= 3 ? Buffer.from(b.subarray(b.length - 3)) : Buffer.concat([this.tail, b]).subarray(-3);
    if (this.partLen > this.maxEventBytes) {
      this.overflow = true;
      this.parts = [];
      this.partLen = 0;
    }
  }
}
