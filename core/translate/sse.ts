/**
 * Server-sent events cut into whole events, whatever the reads look like. Translation
 * state machines must see whole events: an event split across TCP reads is held until
 * its blank line arrives, and one read holding many events yields them all. Only the
 * blank-line boundary is searched (an ASCII byte pair), so a multi-byte UTF-8 character
 * split across reads is decoded only once whole. Work is per event, not per byte.
 */

const LF = 0x0a,
  CR = 0x0d;

/** Receives one whole event: its `event:` name ("" when absent) and its joined `data:` lines. */
export type SseEach = (event: string, data: string) => void;

export class SseReader {
  private pending: Buffer | null = null;

  /** Feed one read; `each` runs for every event completed by it, in order. */
  push(chunk: Buffer, each: SseEach): void {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let start = 0;
    for (;;) {
      const end = eventEnd(buf, start);
      if (end === null) break;
      parseEvent(buf.toString("utf8", start, end[0]), each);
      start = end[1];
    }
    // Copy the tail: the caller's chunk may be reused after we return.
    this.pending = start >= buf.length ? null : Buffer.from(buf.subarray(start));
  }

  /** Bytes of an unfinished event still held (non-zero at stream end means a torn event). */
  get held(): number {
    return this.pending === null ? 0 : this.pending.length;
  }

  /** At stream end: an event not followed by a blank line still counts if it is complete text. */
  flush(each: SseEach): void {
    const p = this.pending;
    this.pending = null;
    if (p !== null && p.length > 0) parseEvent(p.toString("utf8"), each);
  }
}

/** [end of event text, start of next event], or null when no blank line follows `from`. */
function eventEnd(b: Buffer, from: number): [number, number] | null {
  let i = b.indexOf(LF, from);
  while (i >= 0) {
    // "\n\n" or "\n\r\n" ends an event.
    if (b[i + 1] === LF) return [i, i + 2];
    if (b[i + 1] === CR && b[i + 2] === LF) return [i, i + 3];
    i = b.indexOf(LF, i + 1);
  }
  return null;
}

function parseEvent(text: string, each: SseEach): void {
  let event = "";
  let data: string | null = null;
  let pos = 0;
  while (pos <= text.length) {
    let nl = text.indexOf("\n", pos);
    if (nl < 0) nl = text.length;
    let line = text.slice(pos, nl);
    pos = nl + 1;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line === "" || line.charCodeAt(0) === 0x3a /* ':' comment */) continue;
    const c = line.indexOf(":");
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? "" : line.slice(c + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    if (field === "data") data = data === null ? value : data + "\n" + value;
    else if (field === "event") event = value;
  }
  if (data !== null || event !== "") each(event, data ?? "");
}
