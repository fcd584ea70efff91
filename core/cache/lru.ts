/**
 * An LRU bounded in bytes, with a per-entry expiry. A Map keeps insertion order, so a hit
 * re-inserts its key to become the newest, and eviction takes from the front. Entry size is
 * counted as the value's bytes plus the key's and a fixed overhead for the Map slot, so many
 * tiny entries cannot grow past the bound either. The clock is the caller's (tests inject one).
 */
const OVERHEAD = 64;

interface Slot {
  value: Uint8Array;
  expiresAt: number;
  size: number;
}

export class ByteLru {
  private readonly map = new Map<string, Slot>();
  private readonly maxBytes: number;
  bytes = 0;
  /** Entries pushed out to make room (not expiries), since start. */
  evictions = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string, now: number): Uint8Array | null {
    const s = this.map.get(key);
    if (s === undefined) return null;
    this.map.delete(key);
    if (s.expiresAt <= now) {
      this.bytes -= s.size;
      return null;
    }
    this.map.set(key, s);
    return s.value;
  }

  /** Store (replacing any entry under `key`); returns how many entries were evicted for room. */
  set(key: string, value: Uint8Array, expiresAt: number): number {
    const size = value.byteLength + key.length + OVERHEAD;
    this.delete(key);
    if (size > this.maxBytes) return 0;
    let evicted = 0;
    for (const [k, s] of this.map) {
      if (this.bytes + size <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= s.size;
      evicted++;
    }
    this.map.set(key, { value, expiresAt, size });
    this.bytes += size;
    this.evictions += evicted;
    return evicted;
  }

  delete(key: string): void {
    const s = this.map.get(key);
    if (s === undefined) return;
    this.map.delete(key);
    this.bytes -= s.size;
  }
}
