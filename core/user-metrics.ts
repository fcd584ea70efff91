/**
 * Per-developer usage as a bounded Prometheus label (USAGE_METRICS_USER_LABEL_MAX, off by
 * default): the first N distinct `metadata.user_id` values since start each get a slot in
 * the shared metrics buffer; later ones, and requests without a user id, count under
 * user="other". The ledger (/admin/usage?group_by=user) has every user; this is for
 * dashboards and alerts that want a label, at a bounded cardinality.
 *
 * A slot is [state, length, id bytes (128, UTF-8, truncated), requests, input tokens,
 * output tokens, cost micros] with 64-bit counters. A writer hashes the id to a start slot
 * and probes linearly: an empty slot is claimed with a compare-and-swap, filled, then
 * published (state 2); a published slot with the same bytes is the id's. No allocation:
 * the id is encoded into a per-thread scratch buffer.
 */
import { add64, read64 } from "./atomic64.js";

const ID_BYTES = 128;
const ID_U32 = ID_BYTES / 4;
/** state, length, id, then 4 counters of 2 words. */
export const USER_STRIDE = 2 + ID_U32 + 8;
const EMPTY = 0,
  WRITING = 1,
  READY = 2;

export class UserLayout {
  readonly off: number;
  /** Slots for named users; one more ("other") follows them. */
  readonly slots: number;
  readonly totalU32: number;
  constructor(off: number, slots: number) {
    this.off = off;
    this.slots = slots;
    this.totalU32 = slots === 0 ? 0 : (slots + 1) * USER_STRIDE;
  }
}

/** One thread's writer: a scratch buffer for the id's bytes. */
export class UserMetrics {
  private readonly scratch = new Uint8Array(ID_BYTES + 4);
  private readonly scratch32 = new Uint32Array(this.scratch.buffer);
  private readonly enc = new TextEncoder();
  constructor(
    private readonly u32: Uint32Array,
    private readonly layout: UserLayout,
  ) {}

  record(userId: string | null, input: number, output: number, micros: number): void {
    const L = this.layout;
    if (L.slots === 0) return;
    const o = userId === null || userId === "" ? L.off + L.slots * USER_STRIDE : this.slotOf(userId);
    const u = this.u32,
      c = o + 2 + ID_U32;
    add64(u, c, 1);
    if (input > 0) add64(u, c + 2, input);
    if (output > 0) add64(u, c + 4, output);
    if (micros > 0) add64(u, c + 6, micros);
  }

  private slotOf(id: string): number {
    const L = this.layout,
      u = this.u32,
      s = this.scratch32;
    s.fill(0);
    const len = Math.min(this.enc.encodeInto(id, this.scratch.subarray(0, ID_BYTES)).written, ID_BYTES);
    let h = 0x811c9dc5;
    for (let i = 0; i < ID_U32; i++) h = Math.imul(h ^ s[i]!, 0x01000193) >>> 0;
    for (let probe = 0; probe < L.slots; probe++) {
      const o = L.off + ((h + probe) % L.slots) * USER_STRIDE;
      let st = Atomics.load(u, o);
      if (st === EMPTY) st = Atomics.compareExchange(u, o, EMPTY, WRITING);
      if (st === EMPTY) {
        for (let i = 0; i < ID_U32; i++) u[o + 2 + i] = s[i]!;
        Atomics.store(u, o + 1, len);
        Atomics.store(u, o, READY);
        return o;
      }
      for (let spins = 0; st === WRITING && spins < 4096; spins++) st = Atomics.load(u, o);
      if (st !== READY) continue;
      if (Atomics.load(u, o + 1) !== len) continue;
      let same = true;
      for (let i = 0; i < ID_U32 && same; i++) same = u[o + 2 + i] === s[i];
      if (same) return o;
    }
    return L.off + L.slots * USER_STRIDE; // the table is full: "other"
  }
}

export interface UserRow {
  user: string;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

/** The named users then "other" (when it has counted anything). */
export function userSnapshot(u32: Uint32Array, layout: UserLayout): UserRow[] {
  const out: UserRow[] = [];
  const dec = new TextDecoder();
  for (let i = 0; i <= layout.slots && layout.slots > 0; i++) {
    const o = layout.off + i * USER_STRIDE,
      c = o + 2 + ID_U32;
    const requests = read64(u32, c);
    if (i < layout.slots && Atomics.load(u32, o) !== READY) continue;
    if (i === layout.slots && requests === 0) continue;
    const user =
      i === layout.slots ? "other" : dec.decode(new Uint8Array(u32.slice(o + 2, o + 2 + ID_U32).buffer, 0, Atomics.load(u32, o + 1)));
    out.push({ user, requests, input_tokens: read64(u32, c + 2), output_tokens: read64(u32, c + 4), cost_usd: read64(u32, c + 6) / 1e6 });
  }
  return out;
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** Prometheus families for the table; "" when the label is off. */
export function renderUserPrometheus(u32: Uint32Array, layout: UserLayout): string {
  if (layout.slots === 0) return "";
  const rows = userSnapshot(u32, layout);
  const out = [
    "# HELP gateway_user_requests_total Requests per developer (metadata.user_id; the first USAGE_METRICS_USER_LABEL_MAX ids, the rest as other).",
    "# TYPE gateway_user_requests_total counter",
    ...rows.map((r) => `gateway_user_requests_total{user="${esc(r.user)}"} ${r.requests}`),
    "# HELP gateway_user_tokens_total Tokens per developer, by direction.",
    "# TYPE gateway_user_tokens_total counter",
    ...rows.flatMap((r) => [
      `gateway_user_tokens_total{user="${esc(r.user)}",direction="input"} ${r.input_tokens}`,
      `gateway_user_tokens_total{user="${esc(r.user)}",direction="output"} ${r.output_tokens}`,
    ]),
    "# HELP gateway_user_cost_usd_total Cost per developer in USD.",
    "# TYPE gateway_user_cost_usd_total counter",
    ...rows.map((r) => `gateway_user_cost_usd_total{user="${esc(r.user)}"} ${r.cost_usd}`),
  ];
  return out.join("\n") + "\n";
}
