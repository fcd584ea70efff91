import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  CATALOGUE,
  ERROR_TYPES,
  errorBody,
  errorTypeForStatus,
  errorTypeIndex,
  sseErrorFrame,
  statusLine,
  type ErrorCode,
} from "../../core/errors.js";

// dist/test/core/errors.test.js -> ../../../docs/errors.md (the source docs, not a copy)
const DOC_URL = new URL("../../../docs/errors.md", import.meta.url);

interface DocRow {
  code: string;
  status: number;
  type: string;
  when: string;
}

/** The rows of the one `| code | status | type | when |` table in docs/errors.md. */
function docRows(): DocRow[] {
  const md = readFileSync(DOC_URL, "utf8");
  const lines = md.split("\n");
  const head = lines.findIndex((l) => /^\|\s*code\s*\|\s*status\s*\|\s*type\s*\|\s*when\s*\|\s*$/.test(l));
  assert.ok(head >= 0, "docs/errors.md has a `| code | status | type | when |` table");
  assert.match(lines[head + 1]!, /^\|(\s*:?-+:?\s*\|){4}\s*$/, "header separator row");
  const rows: DocRow[] = [];
  for (let i = head + 2; i < lines.length && lines[i]!.startsWith("|"); i++) {
    const cells = lines[i]!.split("|")
      .slice(1, -1)
      .map((c) => c.trim());
    assert.equal(cells.length, 4, `row ${i + 1} has 4 cells: ${lines[i]}`);
    const unquote = (c: string) => c.replace(/^`(.*)`$/, "$1");
    rows.push({ code: unquote(cells[0]!), status: Number(cells[1]), type: unquote(cells[2]!), when: cells[3]! });
  }
  // Exactly one such table.
  const again = lines.slice(head + 1).some((l) => /^\|\s*code\s*\|/.test(l));
  assert.equal(again, false, "only one catalogue table");
  return rows;
}

test("docs/errors.md lists exactly the catalogue, in order, with the same status and type", () => {
  const rows = docRows();
  const codes = Object.keys(CATALOGUE) as ErrorCode[];
  assert.deepEqual(
    rows.map((r) => r.code),
    codes,
    "same codes in the same order",
  );
  const docSet = new Set(rows.map((r) => `${r.code} ${r.status} ${r.type}`));
  const codeSet = new Set(codes.map((c) => `${c} ${CATALOGUE[c].status} ${CATALOGUE[c].type}`));
  for (const x of codeSet) assert.ok(docSet.has(x), `documented: ${x}`);
  for (const x of docSet) assert.ok(codeSet.has(x), `in CATALOGUE: ${x}`);
  assert.equal(docSet.size, rows.length, "no duplicate rows");
  for (const r of rows) assert.ok(r.when.length > 10, `${r.code} has a plain-language 'when'`);
});

test("every catalogue entry is well formed", () => {
  for (const [code, e] of Object.entries(CATALOGUE)) {
    assert.match(code, /^GW_ERR_[A-Z]+_[A-Z_]+$/);
    assert.ok((ERROR_TYPES as readonly string[]).includes(e.type), `${code}: ${e.type} is an Anthropic error type`);
    assert.ok(e.status >= 400 && e.status < 600, `${code}: error status`);
    assert.ok(e.message.length > 0);
  }
});

test("errorBody() with the default message is Anthropic's error shape", () => {
  for (const code of Object.keys(CATALOGUE) as ErrorCode[]) {
    const body = JSON.parse(errorBody(code, "req_abc123"));
    assert.deepEqual(body, {
      type: "error",
      error: { type: CATALOGUE[code].type, message: CATALOGUE[code].message },
      request_id: "req_abc123",
    });
  }
});

test("errorBody() with a custom message containing quotes, newlines and unicode", () => {
  const msg = 'model "claude\\x" has no route\nline two\t\u0001 \u2028 é 🦀';
  const raw = errorBody("GW_ERR_MODEL_NOT_FOUND", "req_q", msg);
  assert.ok(!raw.includes("\n"), "a body is one line");
  const body = JSON.parse(raw);
  assert.deepEqual(body, { type: "error", error: { type: "not_found_error", message: msg }, request_id: "req_q" });
  // The key order matches Anthropic's.
  assert.deepEqual(Object.keys(body), ["type", "error", "request_id"]);
  assert.deepEqual(Object.keys(body.error), ["type", "message"]);
});

test("sseErrorFrame() is one valid SSE event carrying the error body", () => {
  const msg = 'stream "cut"\nafter\r\n3 events';
  const f = sseErrorFrame("api_error", msg, "req_s1");
  const m = /^event: error\ndata: ([^\n]*)\n\n$/.exec(f);
  assert.ok(m, `malformed frame: ${JSON.stringify(f)}`);
  assert.ok(!m[1]!.includes("\r"), "no raw CR inside the data line");
  assert.deepEqual(JSON.parse(m[1]!), { type: "error", error: { type: "api_error", message: msg }, request_id: "req_s1" });
});

test("statusLine() gives the status and reason phrase uWS writes", () => {
  assert.equal(statusLine(200), "200 OK");
  assert.equal(statusLine(404), "404 Not Found");
  assert.equal(statusLine(413), "413 Payload Too Large");
  assert.equal(statusLine(502), "502 Bad Gateway");
  assert.equal(statusLine(529), "529 Overloaded");
  // Unknown statuses still give a valid status line; the same string twice.
  assert.equal(statusLine(599), "599 Status");
  assert.equal(statusLine(599), statusLine(599));
  for (const code of Object.keys(CATALOGUE) as ErrorCode[]) {
    assert.match(statusLine(CATALOGUE[code].status), /^\d{3} [A-Z][A-Za-z ]+$/);
    assert.ok(!statusLine(CATALOGUE[code].status).endsWith(" Status"), `${code} has a known reason phrase`);
  }
});

test("errorTypeForStatus() maps upstream statuses to Anthropic's types", () => {
  const want: Record<number, string> = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
  };
  for (const [s, t] of Object.entries(want)) assert.equal(errorTypeForStatus(Number(s)), t, `status ${s}`);
  assert.equal(errorTypeForStatus(418), "invalid_request_error");
  assert.equal(errorTypeForStatus(599), "api_error");
});

test("errorTypeIndex() indexes ERROR_TYPES, unknown types count as api_error", () => {
  ERROR_TYPES.forEach((t, i) => assert.equal(errorTypeIndex(t), i));
  assert.equal(errorTypeIndex("no_such_type"), ERROR_TYPES.indexOf("api_error"));
});
