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
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export interface StreamFault {
  /** The AWS exception name (or error code). */
  readonly exception: string;
  readonly status: number;
  readonly type: string;
  readonly message: string;
}

const EMPTY = Buffer.alloc(0);
const LFLF = Buffer.from("\n\n");
const BYTES_KEY = Buffer.from('"bytes":"');
const TYPE_PREFIX = Buffer.from('{"type":"');
const QUOTE = 0x22, BACKSLASH = 0x5c, LF = 0x0a, CR = 0x0d;

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

export class EventStreamDecoder {
  /** Bytes of an incomplete frame, held until the rest arrives (a copy). */
  private held: Buffer | null = null;
  /** The provider reported an exception in the stream; nothing more is decoded. */
  fault: StreamFault | null = null;
  /** A malformed frame (bad CRC or length, undecodable payload); nothing more is decoded. */
  corrupt: string | null = null;
  /** Anthropic events emitted so far. */
  events = 0;
  // Scratch fields for the headers of the frame being decoded (no per-frame object).
  private messageType = "";
  private eventType = "";
  private exceptionType = "";
  private errorMessage = "";

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
    let out: Buffer[] | null = null;
    while (data.length - off >= 12) {
      const total = data.readUInt32BE(off);
      const hlen = data.readUInt32BE(off + 4);
      if ((crc32(data.subarray(off, off + 8)) >>> 0) !== data.readUInt32BE(off + 8)) {
        this.corrupt = "event-stream prelude checksum mismatch";
        break;
      }
      if (total < 16 || total > MAX_FRAME_BYTES || hlen > total - 16) {
        this.corrupt = `event-stream frame length ${total} is out of range`;
        break;
      }
      if (data.length - off < total) break;
      if ((crc32(data.subarray(off, off + total - 4)) >>> 0) !== data.readUInt32BE(off + total - 4)) {
        this.corrupt = "event-stream message checksum mismatch";
        break;
      }
      const ev = this.frame(data, off + 12, off + 12 + hlen, off + total - 4);
      off += total;
      if (ev !== null) (out ??= []).push(...ev);
      if (this.stopped) break;
    }
    this.held = this.stopped || off >= data.length ? null : Buffer.from(data.subarray(off));
    if (out === null) return EMPTY;
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** One complete frame: SSE pieces for a chunk event, null otherwise (sets fault/corrupt). */
  private frame(b: Buffer, hs: number, he: number, pe: number): Buffer[] | null {
    if (!this.readHeaders(b, hs, he)) {
      this.corrupt = "event-stream headers are malformed";
      return null;
    }
    const payload = b.subarray(he, pe);
    if (this.messageType === "exception" || this.messageType === "error") {
      const name = this.exceptionType;
      const m = mapException(name);
      const msg = this.messageType === "error" ? this.errorMessage : awsErrorMessage(payload);
      this.fault = { exception: name, status: m?.status ?? 502, type: m?.type ?? "api_error", message: msg !== "" ? msg : name };
      return null;
    }
    if (this.messageType !== "event" || this.eventType !== "chunk") return null; // e.g. initial-response
    const json = chunkEvent(payload);
    if (json === null) {
      this.corrupt = "event-stream chunk payload is not an Anthropic event";
      return null;
    }
    const type = eventType(json);
    const prefix = type === null ? null : prefixFor(type);
    if (prefix === null) {
      this.corrupt = "event-stream chunk holds an event without a type";
      return null;
    }
    this.events++;
    // A data line must not contain raw newlines: re-serialise the rare pretty-printed event.
    const data = json.includes(LF) || json.includes(CR) ? Buffer.from(JSON.stringify(JSON.parse(json.toString("utf8")))) : json;
    return [prefix, data, LFLF];
  }

  /** Reads the headers this decoder needs into the scratch fields; false if malformed. */
  private readHeaders(b: Buffer, i: number, end: number): boolean {
    this.messageType = this.eventType = this.exceptionType = this.errorMessage = "";
    while (i < end) {
      const nlen = b[i]!;
      const ns = i + 1;
      i = ns + nlen;
      if (i >= end) return false;
      const t = b[i++]!;
      let vs = i, ve = i;
      switch (t) {
        case 0: case 1: break; // true, false
        case 2: ve = i + 1; break;
        case 3: ve = i + 2; break;
        case 4: ve = i + 4; break;
        case 5: case 8: ve = i + 8; break;
        case 9: ve = i + 16; break;
        case 6: case 7:
          if (i + 2 > end) return false;
          vs = i + 2;
          ve = vs + b.readUInt16BE(i);
          break;
        default: return false;
      }
      if (ve > end) return false;
      i = ve;
      if (t !== 7 || nlen < 11 || b[ns] !== 0x3a) continue; // only ':'-prefixed string headers matter
      const name = b.toString("latin1", ns, ns + nlen);
      if (name === ":message-type") this.messageType = b.toString("latin1", vs, ve);
      else if (name === ":event-type") this.eventType = b.toString("latin1", vs, ve);
      else if (name === ":exception-type" || name === ":error-code") this.exceptionType = b.toString("utf8", vs, ve);
      else if (name === ":error-message") this.errorMessage = b.toString("utf8", vs, ve);
    }
    return true;
  }
}

/** The decoded `bytes` of a chunk payload `{"bytes":"<base64>",…}`, or null. */
function chunkEvent(payload: Buffer): Buffer | null {
  const k = payload.indexOf(BYTES_KEY);
  if (k >= 0) {
    const s = k + BYTES_KEY.length;
    const e = payload.indexOf(QUOTE, s);
    if (e > s && payload.subarray(s, e).indexOf(BACKSLASH) < 0) return Buffer.from(payload.toString("latin1", s, e), "base64");
  }
  try {
    const v = JSON.parse(payload.toString("utf8")) as { bytes?: unknown };
    return typeof v.bytes === "string" ? Buffer.from(v.bytes, "base64") : null;
  } catch {
    return null;
  }
}

/** The `type` of an Anthropic event: read in place when it is the first key, else parsed. */
function eventType(json: Buffer): string | null {
  if (json.length > TYPE_PREFIX.length && json.subarray(0, TYPE_PREFIX.length).equals(TYPE_PREFIX)) {
    const s = TYPE_PREFIX.length;
    const e = json.indexOf(QUOTE, s);
    if (e > s && json.subarray(s, e).indexOf(BACKSLASH) < 0) return json.toString("latin1", s, e);
  }
  try {
    const v = JSON.parse(json.toString("utf8")) as { type?: unknown };
    return typeof v.type === "string" ? v.type : null;
  } catch {
    return null;
  }
}
