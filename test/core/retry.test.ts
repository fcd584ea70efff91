import { test } from "node:test";
import assert from "node:assert/strict";
import { retryAfterMs, retryDelayMs, shouldRetryStatus } from "../../core/retry.js";

test("retried statuses: 408, 429, 500, 502, 503, 504 and 529; nothing else", () => {
  for (const s of [408, 429, 500, 502, 503, 504, 529]) assert.equal(shouldRetryStatus(s, ""), true, String(s));
  for (const s of [200, 400, 401, 403, 404, 413, 422, 501, 505, 530]) assert.equal(shouldRetryStatus(s, ""), false, String(s));
});

test("x-should-retry from the upstream overrides the table both ways; other values do not", () => {
  assert.equal(shouldRetryStatus(503, "false"), false);
  assert.equal(shouldRetryStatus(529, "false"), false);
  assert.equal(shouldRetryStatus(400, "true"), true);
  assert.equal(shouldRetryStatus(503, "maybe"), true);
  assert.equal(shouldRetryStatus(400, "1"), false);
});

test("retry-after-ms wins over retry-after, rounded up; nonsense falls through", () => {
  assert.equal(retryAfterMs("9", "1500"), 1500);
  assert.equal(retryAfterMs("", "1.2"), 2);
  assert.equal(retryAfterMs("", "0"), 0);
  assert.equal(retryAfterMs("3", "-5"), 3000, "a negative ms value is ignored");
  assert.equal(retryAfterMs("3", "soon"), 3000);
  assert.equal(retryAfterMs("", "Infinity"), -1);
});

test("retry-after: seconds (decimals allowed, whitespace trimmed) or an HTTP date", () => {
  const now = Date.UTC(2026, 0, 1, 12);
  assert.equal(retryAfterMs("3", "", now), 3000);
  assert.equal(retryAfterMs("120", "", now), 120_000);
  assert.equal(retryAfterMs("1.25", "", now), 1250);
  assert.equal(retryAfterMs(" 1.5 ", "", now), 1500);
  assert.equal(retryAfterMs("0", "", now), 0);
  assert.equal(retryAfterMs(new Date(now + 10_000).toUTCString(), "", now), 10_000);
  assert.equal(retryAfterMs(new Date(now - 10_000).toUTCString(), "", now), 0, "a date in the past: no wait");
  assert.equal(retryAfterMs("-3", "", now), -1, "not a delay nor a date");
  assert.equal(retryAfterMs("1 2", "", now), -1);
  assert.equal(retryAfterMs("01 Jan 2026 12:00:05 GMT", "", now), -1, "no day name: not an HTTP date");
  assert.equal(retryAfterMs("later", "", now), -1);
  assert.equal(retryAfterMs("Sunday, 01-Jan-26 12:00:07 GMT", "", now), 7000, "the obsolete RFC 850 form");
  assert.equal(retryAfterMs("", "", now), -1, "nothing given");
});

test("backoff: full jitter under base * 2^(attempt-1), capped at the max", () => {
  const s = { retry_base_delay_ms: 100, retry_max_delay_ms: 1000 };
  assert.equal(retryDelayMs(s, 1, "", "", 0.5), 50, "first retry: half of the 100 ms base");
  assert.equal(retryDelayMs(s, 2, "", "", 0.5), 100);
  assert.equal(retryDelayMs(s, 4, "", "", 0.5), 400);
  assert.equal(retryDelayMs(s, 5, "", "", 0.5), 500, "1600 capped at 1000");
  assert.equal(retryDelayMs(s, 30, "", "", 0.999), 999);
  assert.equal(retryDelayMs(s, 3, "", "", 0), 0);
  assert.equal(retryDelayMs(s, 1, "", "", 0.9999), 99, "floored, under the cap");
});

test("backoff: the upstream's requested wait wins when it is longer than the jitter", () => {
  const s = { retry_base_delay_ms: 100, retry_max_delay_ms: 1000 };
  assert.equal(retryDelayMs(s, 1, "", "5000", 0.5), 5000);
  assert.equal(retryDelayMs(s, 1, "2", "", 0.5), 2000);
  assert.equal(retryDelayMs(s, 3, "", "10", 0.5), 200, "a shorter request does not shorten the backoff");
  assert.equal(retryDelayMs(s, 1, "", "50", 0.5), 50, "equal: the same wait");
});
