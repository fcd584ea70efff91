/**
 * Incremental decoder from Bedrock's `application/vnd.amazon.eventstream` replies to
 * Anthropic SSE. Each AWS message is a prelude (total length, headers length, CRC32), binary
 * headers, a payload and a CRC32 over all of it; a `chunk` event's payload is
 * `{"bytes":"<base64>"}` holding one Anthropic stream event as JSON. We emit each event as
 * `event: <type>\ndata: <json>\n\n` the moment its frame is complete, never waiting for the
 * next one. An `exception` frame (throttlingException, modelStreamErrorException, …) stops
 * decoding and is reported with the status and Anthropic error type it maps to.
 *
 * Pure and allocation-light: the fast path finds `"bytes":"` and the event's `"type"` by
 * scanning bytes; anything unusual (escapes, other key orders) falls back to JSON.parse.
 * test/core/providers/bedrock-eventstream.test.ts checks both against @smithy/eventstream-codec.
 */
import { crc32 } from "node:zlib";
import { awsErrorMessage, mapException } from "./request.js";

/** A frame larger than this is treated as corrupt (Bedrock's events are a few KB). */
const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export interface StreamFault {
  /** The AWS exception name (or error code). */
  readonly exception: string;
  readonly status: number;
  readonly type: string;
  readonly message: string;
}

const EMPTY = Buffer.alloc(0);
const BYTES_KEY = Buffer.from('"bytes":"');
const TYPE_PREFIX = Buffer.from('{"type":"');
const QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LF = 0x0a,
  CR = 0x0d;

/**
 * `event: <type>\ndata: ` prefixes, built once per event type (the set is small and capped);
 * null for a type that could not be an `event:` line (it would let the provider inject lines).
 */
const PREFIXES = new Map<string, Buffer>();
function prefixFor(type: string): Buffer | null {
  let p = PREFIXES.get(type);
  if (p === undefined) {
    if (!/^[a-z_]{1,64}$/.test(type)) return null;
    p = Buffer.from(`event: ${type}\ndata: `);
    if (PREFIXES.size < 64) PREFIXES.set(type, p);
  }
  return p;
}

const H_MESSAGE_TYPE = Buffer.from(":message-type");
const H_EVENT_TYPE = Buffer.from(":event-type");
const H_EXCEPTION_TYPE = Buffer.from(":exception-type");
const H_ERROR_CODE = Buffer.from(":error-code");
const H_ERROR_MESSAGE = Buffer.from(":error-message");
const V_EVENT = Buffer.from("event");
const V_CHUNK = Buffer.from("chunk");
const V_EXCEPTION = Buffer.from("exception");
const V_ERROR = Buffer.from("error");

/** b[s, e) equals `v`, compared in place. */
function eq(b: Buffer, s: number, e: number, v: Buffer): boolean {
  return e - s === v.length && b.compare(v, 0, v.length, s, e) === 0;
}

export class EventStreamDecoder {
  /** Bytes of an incomplete frame, held until the rest arrives (a copy). */
  private held: Buffer | null = null;
  /** The provider reported an exception in the stream; nothing more is decoded. */
  fault: StreamFault | null = null;
  /** A malformed frame (bad CRC or length, undecodable payload); nothing more is decoded. */
  corrupt: string | null = null;
  /** Anthropic events emitted so far. */
  events = 0;
  /** Decoded event JSON of the frame at hand (reused; grows to the largest event). */
  private scratch = Buffer.allocUnsafe(4096);
  // Byte ranges of the headers of the frame being decoded (no per-frame object or string).
  private mts = 0;
  private mte = 0; // :message-type
  private ets = 0;
  private ete = 0; // :event-type
  private xts = 0;
  private xte = 0; // :exception-type or :error-code
  private ems = 0;
  private eme = 0; // :error-message

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.held === null ? 0 : this.held.length;
  }

  /** True once decoding stopped (fault or corrupt frame). */
  get stopped(): boolean {
    return this.fault !== null || this.corrupt !== null;
  }

  /** Feed a chunk; returns the SSE bytes of every event completed by it (maybe none). */
  push(chunk: Buffer): Buffer {
    if (this.stopped) return EMPTY;
    const data = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
    let off = 0;
    let first: Buffer | null = null;
    let more: Buffer[] | null = null;
    while (data.length - off >= 12) {
      const total = data.readUInt32BE(off);
      const hlen = data.readUInt32BE(off + 4);
      if (crc32(data.subarray(off, off + 8)) >>> 0 !== data.readUInt32BE(off + 8)) {
        this.corrupt = "event-stream prelude checksum mismatch";
        break;
      }
      if (total < 16 || total > MAX_FRAME_BYTES || hlen > total - 16) {
        this.corrupt = `event-stream frame length ${total} is out of range`;
        break;
      }
      if (data.length - off < total) break;
      if (crc32(data.subarray(off, off + total - 4)) >>> 0 !== data.readUInt32BE(off + total - 4)) {
        this.corrupt = "event-stream message checksum mismatch";
        break;
      }
      const ev = this.frame(data, off + 12, off + 12 + hlen, off + total - 4);
      off += total;
      if (ev !== null) {
        if (first === null) first = ev;
        else (more ??= [first]).push(ev);
      }
      if (this.stopped) break;
    }
    this.held = this.stopped || off >= data.length ? null : Buffer.from(data.subarray(off));
    if (more !== null) return Buffer.concat(more);
    return first ?? EMPTY;
  }

  /** One complete frame: the SSE bytes of a chunk event, null otherwise (sets fault/corrupt). */
  private frame(b: Buffer, hs: number, he: number, pe: number): Buffer | null {
    if (!this.readHeaders(b, hs, he)) {
      this.corrupt = "event-stream headers are malformed";
      return null;
    }
    const isError = eq(b, this.mts, this.mte, V_ERROR);
    if (isError || eq(b, this.mts, this.mte, V_EXCEPTION)) {
      const name = b.toString("utf8", this.xts, this.xte);
      const m = mapException(name);
      const msg = isError ? b.toString("utf8", this.ems, this.eme) : awsErrorMessage(b.subarray(he, pe));
      this.fault = { exception: name, status: m?.status ?? 502, type: m?.type ?? "api_error", message: msg !== "" ? msg : name };
      return null;
    }
    if (!eq(b, this.mts, this.mte, V_EVENT) || !eq(b, this.ets, this.ete, V_CHUNK)) return null; // e.g. initial-response
    // The event's JSON, decoded from base64 into the scratch buffer (or, on the slow path, a new one).
    let src: Buffer = this.scratch;
    let n = this.decodeBytes(b, he, pe);
    if (n < 0) {
      const slow = chunkEventSlow(b.subarray(he, pe));
      if (slow === null) {
        this.corrupt = "event-stream chunk payload is not an Anthropic event";
        return null;
      }
      src = slow;
      n = slow.length;
    }
    let oneLine = true;
    for (let i = 0; i < n; i++) {
      const c = src[i]!;
      if (c === LF || c === CR) {
        oneLine = false;
        break;
      }
    }
    if (!oneLine) {
      // A data line must not contain raw newlines: re-serialise the rare pretty-printed event.
      try {
        src = Buffer.from(JSON.stringify(JSON.parse(src.toString("utf8", 0, n))));
      } catch {
        this.corrupt = "event-stream chunk holds invalid JSON";
        return null;
      }
      n = src.length;
    }
    const type = eventType(src, n);
    const prefix = type === null ? null : prefixFor(type);
    if (prefix === null) {
      this.corrupt = "event-stream chunk holds an event without a usable type";
      return null;
    }
    this.events++;
    const out = Buffer.allocUnsafe(prefix.length + n + 2);
    prefix.copy(out, 0);
    src.copy(out, prefix.length, 0, n);
    out[out.length - 2] = LF;
    out[out.length - 1] = LF;
    return out;
  }

  /**
   * Fast path: `"bytes":"<base64>"` in b[s, e) decoded into the scratch buffer; returns the
   * decoded length, or -1 when the payload is not in that plain form (escapes, no key).
   */
  private decodeBytes(b: Buffer, s: number, e: number): number {
    const k = b.indexOf(BYTES_KEY, s);
    if (k < 0 || k + BYTES_KEY.length > e) return -1;
    const vs = k + BYTES_KEY.length;
    const ve = b.indexOf(QUOTE, vs);
    if (ve < 0 || ve >= e) return -1;
    const bs = b.indexOf(BACKSLASH, vs);
    if (bs >= 0 && bs < ve) return -1;
    const need = ((ve - vs) * 3) >> 2;
    if (need > this.scratch.length) this.scratch = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
    return this.scratch.write(b.toString("latin1", vs, ve), 0, "base64");
  }

  /** Records the byte ranges of the headers this decoder needs; false if malformed. */
  private readHeaders(b: Buffer, i: number, end: number): boolean {
    this.mts = this.mte = this.ets = this.ete = this.xts = this.xte = this.ems = this.eme = 0;
    while (i < end) {
      const nlen = b[i]!;
      const ns = i + 1;
      i = ns + nlen;
      if (i >= end) return false;
      const t = b[i++]!;
      let vs = i,
        ve = i;
      switch (t) {
        case 0:
        case 1:
          break; // true, false
        case 2:
          ve = i + 1;
          break;
        case 3:
          ve = i + 2;
          break;
        case 4:
          ve = i + 4;
          break;
        case 5:
        case 8:
          ve = i + 8;
          break;
        case 9:
          ve = i + 16;
          break;
        case 6:
        case 7:
          if (i + 2 > end) return false;
          vs = i + 2;
          ve = vs + b.readUInt16BE(i);
          break;
        default:
          return false;
      }
      if (ve > end) return false;
      i = ve;
      if (t !== 7 || b[ns] !== 0x3a) continue; // only ':'-prefixed string headers matter
      const ne = ns + nlen;
      if (eq(b, ns, ne, H_MESSAGE_TYPE)) (this.mts = vs), (this.mte = ve);
      else if (eq(b, ns, ne, H_EVENT_TYPE)) (this.ets = vs), (this.ete = ve);
      else if (eq(b, ns, ne, H_EXCEPTION_TYPE) || eq(b, ns, ne, H_ERROR_CODE)) (this.xts = vs), (this.xte = ve);
      else if (eq(b, ns, ne, H_ERROR_MESSAGE)) (this.ems = vs), (this.eme = ve);
    }
    return true;
  }
}

/** The slow path: the payload parsed as JSON, its `bytes` decoded; null if it has none. */
function chunkEventSlow(payload: Buffer): Buffer | null {
  try {
    const v = JSON.parse(payload.toString("utf8")) as { bytes?: unknown };
    return typeof v.bytes === "string" ? Buffer.from(v.bytes, "base64") : null;
  } catch {
    return null;
  }
}

/** The `type` of an Anthropic event in json[0, n): read in place when it is the first key, else parsed. */
function eventType(json: Buffer, n: number): string | null {
  const p = TYPE_PREFIX.length;
  if (n > p && json.compare(TYPE_PREFIX, 0, p, 0, p) === 0) {
    const e = json.indexOf(QUOTE, p);
    if (e > p && e < n) {
      const bs = json.indexOf(BACKSLASH, p);
      if (bs < 0 || bs > e) return json.toString("latin1", p, e);
    }
  }
  try {
    const v = JSON.parse(json.toString("utf8", 0, n)) as { type?: unknown };
    return typeof v.type === "string" ? v.type : null;
  } catch {
    return null;
  }
}
