/**
 * Ledger rows handed from an acceptor thread to the main thread through shared memory: a
 * single-producer, single-consumer ring of records in a SharedArrayBuffer, one per
 * acceptor. Before, each thread batched rows as arrays and posted them, so every row was
 * structured-cloned on its way out (issue 12: ~0.7 µs a row on the request thread, and
 * the arrays were garbage). Now `push` writes the row's numbers and UTF-8 strings in
 * place, allocating nothing; the main thread `drain`s on a timer and decodes them.
 *
 * A full ring never blocks a request and never overwrites: the row is dropped and counted
 * (`takeDropped`, reported with the ledger's other dropped rows). `pastHalf` tells the
 * writer once per drain that it should ask for an early drain.
 *
 * Layout: 16 bytes of header (Int32: bytes written, bytes read, rows dropped, drain asked),
 * then the data. A record starts on 8 bytes: its size (Int32, 0 = "skip to the start": the
 * record did not fit before the end), 10 Float64 numbers, 7 strings as a 16-bit byte length
 * (0xffff = null) and UTF-8. Strings longer than MAX_STRING_UNITS are cut (every string
 * of a row is capped well below it before it gets here: ids, 256-byte models, 200-character
 * session and user ids).
 */
import type { UsageRow } from "../workers/ledger-task.js";

const HEADER = 16;
const H_HEAD = 0,
  H_TAIL = 1,
  H_DROPPED = 2,
  H_ASKED = 3;
const NUMBERS = 10;
const STRINGS_AT = 8 + NUMBERS * 8;
const NULL_LEN = 0xffff;
/** UTF-16 units kept of one string (3 UTF-8 bytes each at most). */
export const MAX_STRING_UNITS = 1024;
/** The largest record: header, numbers and seven strings at their cap. */
const MAX_RECORD = STRINGS_AT + 7 * (2 + MAX_STRING_UNITS * 3) + 8;

/** Default ring size per acceptor thread: ~14,000 typical rows (~150 bytes each). */
export const LEDGER_RING_BYTES = 2 * 1024 * 1024;

export class LedgerRing {
  readonly sab: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly u8: Uint8Array;
  private readonly text: Buffer;
  private readonly cap: number;
  /** The writer's own copy of the bytes written, and the bytes read as it last looked. */
  private head: number;
  private tailSeen: number;

  /** A buffer for a ring of `bytes` (a power of two, at least 64 KiB). */
  static bufferFor(bytes = LEDGER_RING_BYTES): SharedArrayBuffer {
    if (bytes < 65536 || (bytes & (bytes - 1)) !== 0) throw new Error(`ledger ring size must be a power of two ≥ 64 KiB, got ${bytes}`);
    return new SharedArrayBuffer(HEADER + bytes);
  }

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.cap = sab.byteLength - HEADER;
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.u8 = new Uint8Array(sab);
    this.text = Buffer.from(sab);
    this.head = Atomics.load(this.i32, H_HEAD) >>> 0;
    this.tailSeen = Atomics.load(this.i32, H_TAIL) >>> 0;
  }

  /** Write one row (one writer: the thread that made this LedgerRing object). False: the ring is full and the row was dropped (counted). */
  push(r: UsageRow): boolean {
    const i32 = this.i32,
      cap = this.cap;
    const head = this.head;
    let pos = head & (cap - 1);
    // An upper bound of the record's size (3 UTF-8 bytes per UTF-16 unit), rounded up to 8.
    const bound = (STRINGS_AT + 14 + 3 * (len(r[0]) + len(r[2]) + len(r[3]) + len(r[4]) + len(r[12]) + len(r[13]) + len(r[14])) + 7) & ~7;
    const toEnd = cap - pos;
    let skip = 0;
    if (bound > toEnd) skip = toEnd; // does not fit before the end: mark the rest as skipped, start over
    // The reader only frees space: look at its progress again only when the last look is not enough.
    if (bound + skip > cap - ((head - this.tailSeen) >>> 0)) this.tailSeen = Atomics.load(i32, H_TAIL) >>> 0;
    if (bound + skip > cap - ((head - this.tailSeen) >>> 0) || bound > MAX_RECORD) {
      Atomics.add(i32, H_DROPPED, 1);
      return false;
    }
    if (skip > 0) {
      i32[(HEADER + pos) >> 2] = 0;
      pos = 0;
    }
    const at = HEADER + pos;
    const f = this.f64,
      n = (at >> 3) + 1;
    f[n] = r[1];
    f[n + 1] = r[5];
    f[n + 2] = r[6];
    f[n + 3] = r[7];
    f[n + 4] = r[8];
    f[n + 5] = r[9];
    f[n + 6] = r[10];
    f[n + 7] = r[11];
    f[n + 8] = r[15] ?? 0;
    f[n + 9] = r[16] ?? 0;
    let p = at + STRINGS_AT;
    p = this.str(p, r[0]);
    p = this.str(p, r[2]);
    p = this.str(p, r[3]);
    p = this.str(p, r[4]);
    p = this.str(p, r[12]);
    p = this.str(p, r[13]);
    p = this.str(p, r[14]);
    const size = (p - at + 7) & ~7;
    i32[at >> 2] = size;
    // Publishes the record: the reader sees every byte above once it sees this.
    this.head = (head + skip + size) >>> 0;
    Atomics.store(i32, H_HEAD, this.head | 0);
    return true;
  }

  /** Past half full and nobody asked for a drain since the last one: the writer should ask (once). */
  pastHalf(): boolean {
    const half = this.cap >>> 1;
    if ((this.head - this.tailSeen) >>> 0 <= half) return false;
    this.tailSeen = Atomics.load(this.i32, H_TAIL) >>> 0;
    return (this.head - this.tailSeen) >>> 0 > half && Atomics.compareExchange(this.i32, H_ASKED, 0, 1) === 0;
  }

  /** Read every complete record (the reader's thread only), oldest first. */
  drain(): UsageRow[] {
    const i32 = this.i32,
      cap = this.cap,
      f = this.f64;
    Atomics.store(i32, H_ASKED, 0);
    const head = Atomics.load(i32, H_HEAD) >>> 0;
    let tail = Atomics.load(i32, H_TAIL) >>> 0;
    const out: UsageRow[] = [];
    while (tail !== head) {
      const pos = tail & (cap - 1);
      const at = HEADER + pos;
      const size = i32[at >> 2]!;
      if (size === 0) {
        tail = (tail + cap - pos) >>> 0;
        continue;
      }
      const n = (at >> 3) + 1;
      let p = at + STRINGS_AT;
      const s: (string | null)[] = [];
      for (let k = 0; k < 7; k++) {
        const l = this.u8[p]! | (this.u8[p + 1]! << 8);
        p += 2;
        if (l === NULL_LEN) s.push(null);
        else {
          s.push(this.text.toString("utf8", p, p + l));
          p += l;
        }
      }
      out.push([
        s[0]!,
        f[n]!,
        s[1]!,
        s[2]!,
        s[3]!,
        f[n + 1]!,
        f[n + 2]!,
        f[n + 3]!,
        f[n + 4]!,
        f[n + 5]!,
        f[n + 6]!,
        f[n + 7]!,
        s[4]!,
        s[5]!,
        s[6]!,
        f[n + 8]!,
        f[n + 9]!,
      ]);
      tail = (tail + size) >>> 0;
    }
    // Frees the space: the writer may reuse it once it sees this.
    Atomics.store(i32, H_TAIL, tail | 0);
    return out;
  }

  /** Rows dropped because the ring was full since the last call. */
  takeDropped(): number {
    return Atomics.exchange(this.i32, H_DROPPED, 0);
  }

  /** Write `s` at `p` as a 16-bit length and UTF-8 (lone surrogates become U+FFFD); returns the end. */
  private str(p: number, s: string | null): number {
    const u8 = this.u8;
    if (s === null) {
      u8[p] = 0xff;
      u8[p + 1] = 0xff;
      return p + 2;
    }
    const start = p;
    p += 2;
    let end = s.length > MAX_STRING_UNITS ? MAX_STRING_UNITS : s.length;
    // Never cut a surrogate pair in two.
    if (end < s.length && (s.charCodeAt(end - 1) & 0xfc00) === 0xd800) end--;
    // Encoded here: Buffer#write on shared memory measured several times slower for these short strings.
    for (let i = 0; i < end; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) u8[p++] = c;
      else if (c < 0x800) {
        u8[p++] = 0xc0 | (c >> 6);
        u8[p++] = 0x80 | (c & 63);
      } else {
        if ((c & 0xfc00) === 0xd800 && i + 1 < end && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
          u8[p++] = 0xf0 | (cp >> 18);
          u8[p++] = 0x80 | ((cp >> 12) & 63);
          u8[p++] = 0x80 | ((cp >> 6) & 63);
          u8[p++] = 0x80 | (cp & 63);
          continue;
        }
        if ((c & 0xf800) === 0xd800) c = 0xfffd;
        u8[p++] = 0xe0 | (c >> 12);
        u8[p++] = 0x80 | ((c >> 6) & 63);
        u8[p++] = 0x80 | (c & 63);
      }
    }
    const n = p - start - 2;
    u8[start] = n & 0xff;
    u8[start + 1] = n >> 8;
    return p;
  }
}

/** UTF-16 units of a string as stored (0 for null). */
function len(s: string | null): number {
  return s === null ? 0 : s.length > MAX_STRING_UNITS ? MAX_STRING_UNITS : s.length;
}
