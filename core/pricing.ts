/**
 * The price table: USD per million tokens for input, output, cache write and cache read,
 * per model name or model-name prefix (`claude-sonnet-4*`). Defaults cover current Claude
 * models; PRICES_FILE entries override or extend them. Costs are integers in micro-dollars
 * (1e-6 USD), so budgets and counters add exactly.
 *
 * Each entry also names the `model` metric label: the entry's name without its `*`. A model
 * that no entry matches costs 0 and is labelled "other", so labels stay bounded by the table.
 */
import typia, { tags } from "typia";

export interface PriceEntry {
  /** USD per million tokens. */
  input: number & tags.Minimum<0>;
  output: number & tags.Minimum<0>;
  cache_write: number & tags.Minimum<0>;
  cache_read: number & tags.Minimum<0>;
}

export interface PricesFile {
  /** Exact model name, or a prefix ending in `*`. */
  models: Record<string, PriceEntry>;
}

/** Anthropic list prices (USD / MTok; cache write = 5-minute write). */
export const DEFAULT_PRICES: Readonly<Record<string, PriceEntry>> = Object.freeze({
  "claude-opus-4-5*": { input: 5, output: 25, cache_write: 6.25, cache_read: 0.5 },
  "claude-opus-4*": { input: 15, output: 75, cache_write: 18.75, cache_read: 1.5 },
  "claude-sonnet-4*": { input: 3, output: 15, cache_write: 3.75, cache_read: 0.3 },
  "claude-haiku-4-5*": { input: 1, output: 5, cache_write: 1.25, cache_read: 0.1 },
  "claude-3-7-sonnet*": { input: 3, output: 15, cache_write: 3.75, cache_read: 0.3 },
  "claude-3-5-sonnet*": { input: 3, output: 15, cache_write: 3.75, cache_read: 0.3 },
  "claude-3-5-haiku*": { input: 0.8, output: 4, cache_write: 1, cache_read: 0.08 },
  "claude-3-opus*": { input: 15, output: 75, cache_write: 18.75, cache_read: 1.5 },
  "claude-3-haiku*": { input: 0.25, output: 1.25, cache_write: 0.3, cache_read: 0.03 },
});

export const validatePricesFile = typia.createValidate<PricesFile>();

/** One resolved price: micro-dollars per token (USD/MTok = µ$/token). */
export interface Price {
  readonly label: string;
  /** Index of the label in PriceTable.labels (metrics slot). */
  readonly index: number;
  readonly input: number;
  readonly output: number;
  readonly cacheWrite: number;
  readonly cacheRead: number;
}

const CACHE_MAX = 1024;

/** The label of models no entry matches. */
export const OTHER_MODEL = "other";

export class PriceTable {
  /** Metric label per entry, then "other" last. */
  readonly labels: readonly string[];
  readonly other: Price;
  private readonly exact = new Map<string, Price>();
  /** Prefix entries, longest first. */
  private readonly prefixes: { prefix: string; price: Price }[] = [];

  constructor(entries: Readonly<Record<string, PriceEntry>>) {
    const labels: string[] = [];
    for (const [name, e] of Object.entries(entries)) {
      const prefix = name.endsWith("*");
      const label = prefix ? name.slice(0, -1) : name;
      let index = labels.indexOf(label);
      if (index < 0) index = labels.push(label) - 1;
      const p: Price = Object.freeze({
        label,
        index,
        input: e.input,
        output: e.output,
        cacheWrite: e.cache_write,
        cacheRead: e.cache_read,
      });
      if (prefix) this.prefixes.push({ prefix: label, price: p });
      else this.exact.set(label, p);
    }
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    labels.push(OTHER_MODEL);
    this.labels = Object.freeze(labels);
    this.other = Object.freeze({ label: OTHER_MODEL, index: labels.length - 1, input: 0, output: 0, cacheWrite: 0, cacheRead: 0 });
  }

  /** Defaults, overridden and extended by a PRICES_FILE's entries. */
  static withOverrides(file: PricesFile | null): PriceTable {
    return new PriceTable({ ...DEFAULT_PRICES, ...(file?.models ?? {}) });
  }

  /**
   * Exact name, else the longest matching prefix, else `other` (cost 0). Prefix results
   * are remembered for the first CACHE_MAX distinct names (client model strings are not
   * trusted to be few), so the usual lookup is one Map hit.
   */
  lookup(model: string): Price {
    const e = this.exact.get(model);
    if (e !== undefined) return e;
    const ps = this.prefixes;
    let p = this.other;
    for (let i = 0; i < ps.length; i++) {
      if (model.startsWith(ps[i]!.prefix)) {
        p = ps[i]!.price;
        break;
      }
    }
    if (this.exact.size < CACHE_MAX) this.exact.set(model, p);
    return p;
  }
}

/** Cost in integer micro-dollars (rounded up: a budget never under-counts). */
export function costMicros(p: Price, input: number, output: number, cacheWrite: number, cacheRead: number): number {
  return Math.ceil(p.input * input + p.output * output + p.cacheWrite * cacheWrite + p.cacheRead * cacheRead);
}
