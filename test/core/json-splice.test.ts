import { test } from "node:test";
import assert from "node:assert/strict";
import { duplicateModelKey, findModelRange, spliceModel, spliceModelSlow } from "../../core/json-splice.js";
import { prng } from "../../core/prng.js";

const NEW_MODEL = 'upstream-"model"\\\n-é-🦀';

/**
 * Splices NEW_MODEL into `raw` both ways and checks that they agree with each other and
 * with what JSON.parse says the body means. Returns whether the fast path applied.
 *
 * Numbers like -0 are avoided in the inputs: re-serialising (the slow path) turns -0
 * into 0, which is exactly the kind of drift the fast path exists to avoid.
 */
function check(raw: string, model = NEW_MODEL): boolean {
  const buf = Buffer.from(raw, "utf8");
  const parsed = JSON.parse(raw) as Record<string, unknown>;
  const fast = spliceModel(buf, parsed, model);
  const slow = spliceModelSlow(parsed, model);
  const pf = JSON.parse(fast.toString("utf8"));
  const ps = JSON.parse(slow.toString("utf8"));
  const ctx = `body: ${raw}`;
  assert.deepStrictEqual(pf, ps, `fast and slow paths disagree; ${ctx}`);
  assert.deepStrictEqual(pf, { ...parsed, model }, `the spliced body means the original with the new model; ${ctx}`);
  assert.deepStrictEqual(Object.keys(pf), Object.keys(ps), `same key order; ${ctx}`);
  assert.equal(pf.model, model);

  const r = findModelRange(buf);
  if (r !== null) {
    const value = Buffer.from(JSON.stringify(model), "utf8");
    // Every byte outside the model value is unchanged.
    assert.ok(fast.subarray(0, r[0]).equals(buf.subarray(0, r[0])), `bytes before the model value changed; ${ctx}`);
    assert.ok(fast.subarray(r[0], r[0] + value.length).equals(value), `the new value is JSON.stringify(model); ${ctx}`);
    assert.ok(fast.subarray(r[0] + value.length).equals(buf.subarray(r[1])), `bytes after the model value changed; ${ctx}`);
    // The range is the string that JSON.parse reads as the model.
    assert.equal(JSON.parse(buf.subarray(r[0], r[1]).toString("utf8")), parsed.model, `range is the model JSON.parse sees; ${ctx}`);
  }
  return r !== null;
}

/** Bodies where the fast path must apply (plain "model" key holding a string). */
const FAST_BODIES = [
  `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}`,
  `{ "model" : "claude" , "max_tokens" : 10 }`,
  `\n\t {\r\n  "model":\t"claude"\n}\n`,
  `{"max_tokens":1024,"messages":[{"role":"user","content":"hi"}],"model":"claude-x"}`,
  `{"metadata":{"model":"inner","list":["model",{"model":"deep"}]},"model":"outer","z":[[],{}]}`,
  `{"system":"say \\"model\\": \\"x\\" and } ] { [ , :","model":"m","t":"\\\\"}`,
  `{"a":"\\\\\\"model\\":","model":"m"}`,
  `{"model":"cl\\u0061ude \\"quoted\\" \\\\ \\/ \\n","x":"\\ud83e\\udd80"}`,
  `{"messages":[{"role":"user","content":[{"type":"text","text":"é ✓ 🦀 \\u2028"}]}],"model":"claude"}`,
  `{"n":[1,-2.5e-3,1E+10,12345678901234567890,1.0,true,false,null],"model":"m","o":{}}`,
  `{"model":""}`,
  `{"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"…","signature":"EqoBCkgIARABGAIiQL+/=="}]}],"model":"m"}`,
  // Duplicate top-level keys: JSON.parse keeps the last one, so must the splice.
  `{"model":"first","x":1,"model":"last"}`,
  `{"model":{"not":"a string"},"model":"last"}`,
  `{"model":"a","model":"b","model":"c"}`,
  `{"__proto__":{"model":"p"},"model":"m"}`,
];

/** Bodies where the fast path must decline (and the slow path answers). */
const SLOW_BODIES = [
  `{"mod\\u0065l":"escaped-key"}`,
  `{"model":"plain","mod\\u0065l":"escaped-last"}`,
  `{"\\u006dodel":"escaped-first","model":"plain-last"}`,
  `{"model":"string","model":42}`,
  `{"model":null}`,
  `{"model":["claude"]}`,
  `{"max_tokens":5}`,
  `{}`,
  `{"a\\"b":1,"model":"m"}`,
];

test("fast path applies to plain bodies and agrees with the slow path byte-for-byte outside the model", () => {
  for (const raw of FAST_BODIES) assert.equal(check(raw), true, `fast path expected for ${raw}`);
});

test("fast path declines escaped keys and non-string models; the result is still right", () => {
  for (const raw of SLOW_BODIES) assert.equal(check(raw), false, `slow path expected for ${raw}`);
});

test("a duplicate model key: the upstream gets the model the router saw", () => {
  const raw = `{"model":"cheap-model","messages":[],"model":"routed-model"}`;
  const out = spliceModel(Buffer.from(raw), JSON.parse(raw), "upstream-x").toString();
  assert.equal(out, `{"model":"cheap-model","messages":[],"model":"upstream-x"}`);
  assert.equal(JSON.parse(out).model, "upstream-x");
});

test("an escaped key spelling model is rewritten too (via the slow path)", () => {
  const raw = `{"model":"a","mod\\u0065l":"b"}`;
  const out = spliceModel(Buffer.from(raw), JSON.parse(raw), "new");
  assert.deepEqual(JSON.parse(out.toString()), { model: "new" });
  assert.ok(!out.toString().includes('"b"'), "no stale model value survives");
});

test("findModelRange returns null for non-objects", () => {
  for (const raw of [`[]`, `"model"`, `[{"model":"m"}]`, `42`, ``]) {
    assert.equal(findModelRange(Buffer.from(raw)), null, raw);
  }
});

// ---- deterministic fuzz ----------------------------------------------------------------

class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  ws(): string {
    return this.rnd() < 0.6 ? "" : this.pick([" ", "\n", "\t", "\r\n", "  ", " \n  "]);
  }
  /** Raw JSON string content pieces (valid inside quotes). */
  str(): string {
    const pieces = [
      "a",
      "model",
      "claude",
      " ",
      '\\"',
      "\\\\",
      "\\n",
      "\\t",
      "\\/",
      "\\u0041",
      "\\u00e9",
      "\\ud83e\\udd80",
      "{",
      "}",
      "[",
      "]",
      ",",
      ":",
      '\\"model\\":',
      "é",
      "🦀",
      "\\u2028",
      '\\\\\\"',
    ];
    let s = "";
    for (let n = this.int(6); n > 0; n--) s += this.pick(pieces);
    return `"${s}"`;
  }
  key(): string {
    return this.pick([
      `"model"`,
      `"model"`,
      `"mod\\u0065l"`,
      `"\\u006dodel"`,
      `"models"`,
      `"Model"`,
      `"a"`,
      `"b"`,
      `"content"`,
      `"__proto__"`,
      `"k\\"ey"`,
      `""`,
    ]);
  }
  scalar(): string {
    return this.pick([
      () => this.str(),
      () => this.pick(["0", "-1", "3.5", "1e10", "-2.5E-3", "123456789012345678901", "1.0"]),
      () => "true",
      () => "false",
      () => "null",
    ])();
  }
  value(depth: number): string {
    const r = this.rnd();
    if (depth <= 0 || r < 0.5) return this.scalar();
    if (r < 0.75) {
      const items: string[] = [];
      for (let n = this.int(4); n > 0; n--) items.push(this.ws() + this.value(depth - 1) + this.ws());
      return `[${items.join(",")}${items.length === 0 ? this.ws() : ""}]`;
    }
    return this.object(depth - 1, false);
  }
  object(depth: number, top: boolean): string {
    const members: string[] = [];
    const n = this.int(top ? 6 : 4);
    for (let i = 0; i < n; i++) {
      const k = this.key();
      const v = top && k === `"model"` && this.rnd() < 0.8 ? this.str() : this.value(depth);
      members.push(`${this.ws()}${k}${this.ws()}:${this.ws()}${v}${this.ws()}`);
    }
    if (top && this.rnd() < 0.7) {
      members.splice(this.int(members.length + 1), 0, `${this.ws()}"model"${this.ws()}:${this.ws()}${this.str()}${this.ws()}`);
    }
    return `{${members.join(",")}${members.length === 0 ? this.ws() : ""}}`;
  }
}

test("fuzz: fast and slow paths agree on 5000 random bodies (seeded)", () => {
  const SEED = 0x5eed1234;
  const g = new Gen(prng(SEED));
  let fastCount = 0;
  for (let i = 0; i < 5000; i++) {
    const raw = g.ws() + g.object(3, true) + g.ws();
    try {
      JSON.parse(raw);
    } catch (e) {
      assert.fail(`generator bug, invalid JSON at #${i}: ${raw} (${(e as Error).message})`);
    }
    const model = g.rnd() < 0.5 ? "m" : NEW_MODEL;
    if (check(raw, model)) fastCount++;
  }
  // The fuzz must exercise both paths a good deal, or it proves little.
  assert.ok(fastCount > 1000, `fast path taken ${fastCount} times`);
  assert.ok(fastCount < 4900, `slow path taken ${5000 - fastCount} times`);
});

/** Whether more than one top-level key decodes to "model", by JSON's own reading: every top-level key decoded. */
function oracle(raw: string): boolean {
  // JSON.parse merges duplicate keys before a reviver sees them: walk the text instead and
  // decode each top-level key with JSON.parse.
  const t = raw.trim();
  if (!t.startsWith("{")) return false;
  let depth = 0,
    n = 0,
    expectKey = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i]!;
    if (c === '"') {
      let j = i + 1;
      while (t[j] !== '"') j += t[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey && JSON.parse(t.slice(i, j + 1)) === "model") n++;
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 1) expectKey = true;
  }
  return n > 1;
}

test("duplicateModelKey: only a second top-level key decoding to model counts, escaped spellings included", () => {
  const dup = (s: string) => {
    JSON.parse(s); // every case is a body JSON.parse accepted
    return duplicateModelKey(s, Buffer.from(s));
  };
  assert.equal(dup('{"max_tokens":1}'), false);
  assert.equal(dup('{"model":"a","messages":[]}'), false);
  assert.equal(dup('{"model":"a","model":"b"}'), true);
  assert.equal(dup('{"model":"a", "x":{"model":"b"},"y":["model"],"z":"\\u0041"}'), false);
  assert.equal(dup('{"m\\u006fdel":"a","model":"b"}'), true);
  assert.equal(dup('{"m\\u006Fdel":"a","model":"b"}'), true, "upper-case hex");
  assert.equal(dup('{"\\u006D\\u006f\\u0064\\u0065\\u006C":"a","model":"b"}'), true, "every letter escaped, mixed case");
  assert.equal(dup('{"model":"a","mode\\u006c":"b"}'), true, "the escape in the last letter");
  assert.equal(dup('{ "mod\\u0065l" : "a" }'), false);
  assert.equal(dup('{"model" :"a" ,\n "model"\t: "b"}'), true, "whitespace around the keys");
  // "model" inside string values, nested objects and arrays, escaped quotes: never a second key.
  assert.equal(dup('{"model":"model","system":"\\"model\\": \\"x\\"","m":["model","model"]}'), false);
  assert.equal(dup('{"tools":[{"input_schema":{"properties":{"model":{"enum":["model"]}}}}],"model":"a"}'), false);
  assert.equal(dup('{"a":{"model":1,"model":2},"model":"a"}'), false, "a nested duplicate is not the top level's");
  assert.equal(dup('{"a":"\\\\","model":"a","b":"x\\\\\\"model\\"","model":"b"}'), true, "escaped backslashes before quotes");
  assert.equal(dup('{"a":"\\\\u006d","model":"a"}'), false, "an escaped backslash then u006d is no escape");
  assert.equal(dup('{"\\u0000model":"a","model":"b","models":"c","Model":"d"}'), false, "near misses are other keys");
  assert.equal(dup('{"model":"a","text":"\\u006d\\u006fdel","é🦀":{"model":1}}'), false, "escapes in values, non-ASCII keys");
  assert.equal(dup('{"é":"ü","model":"a","🦀":{"model":1},"model":"b"}'), true, "non-ASCII bytes before the keys");
  // Invalid UTF-8 decodes to U+FFFD and never swallows the ASCII after it: text and bytes agree.
  const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(p as string)));
  for (const [body, want] of [
    [bytes('{"model":"a","x":"', [0xe2, 0x82], '","model":"b"}'), true],
    [bytes('{"x":"', [0xf0, 0x9f], '","model":"a","n":{"model":1}}'), false],
    [bytes('{"', [0xff], '":"', [0xc3], '","m\\u006fdel":"a","model":"b"}'), true],
  ] as const) {
    const text = body.toString("utf8");
    JSON.parse(text);
    assert.equal(duplicateModelKey(text, body), want, text);
  }
  assert.equal(dup('["model","model"]'), false);
  assert.equal(dup('"model"'), false);
});

test("duplicateModelKey: escaped and literal second keys at offsets near the start of a body and around 64 KiB", () => {
  const filler = (n: number) =>
    `"pad":"${"x\\n"
      .repeat(Math.ceil(n / 3))
      .slice(0, n)
      .replace(/\\$/, "")}"`;
  for (const at of [0, 1, 2, 3, 4, 5, 6, 65_529, 65_530, 65_531, 65_532, 65_533, 65_534, 65_535, 65_536]) {
    const pad = filler(at);
    for (const key of ['"model"', '"\\u006dodel"', '"mod\\u0065l"', '"mode\\u006C"']) {
      const second = `{${pad},${key}:"a","x":1,"model":"b"}`;
      assert.equal(duplicateModelKey(second, Buffer.from(second)), true, `second key ${key} after ${at} characters`);
      const nested = `{${pad},"n":{${key}:"a"},"model":"b"}`;
      assert.equal(duplicateModelKey(nested, Buffer.from(nested)), false, `nested key ${key} after ${at} characters`);
      const last = `{"model":"b",${pad},${key}:"a"}`;
      assert.equal(duplicateModelKey(last, Buffer.from(last)), true, `last key ${key} after ${at} characters`);
    }
  }
});

test("fuzz: duplicateModelKey agrees with a key-by-key decoding of the top level on 5000 random bodies (seeded)", () => {
  const g = new Gen(prng(0x0d0b1e));
  let dups = 0;
  for (let i = 0; i < 5000; i++) {
    const raw = g.ws() + g.object(3, true) + g.ws();
    const want = oracle(raw);
    if (want) dups++;
    assert.equal(duplicateModelKey(raw, Buffer.from(raw)), want, `body: ${raw}`);
  }
  assert.ok(dups > 500 && dups < 4500, `both answers exercised (${dups} duplicates)`);
});
