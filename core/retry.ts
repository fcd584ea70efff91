/**
 * Retry policy: which upstream answers are retried and how long to wait. Exponential
 * backoff with full jitter (a uniform delay in [0, min(max, base * 2^(attempt-1))]),
 * raised to the upstream's `retry-after-ms` / `retry-after` (seconds or an HTTP date)
 * when it gives one.
 */
export interface RetrySettings {
  retry_base_delay_ms: number;
  retry_max_delay_ms: number;
}

const RETRYABLE = new Set([408, 429, 500, 502, 503, 504, 529]);

/** `x-should-retry: true|false` from the upstream overrides the status table. */
export function shouldRetryStatus(status: number, xShouldRetry: string): boolean {
  if (xShouldRetry === "true") return true;
  if (xShouldRetry === "false") return false;
  return RETRYABLE.has(status);
}

/** The upstream's requested wait in ms, or -1 when it gave none (or gave nonsense). */
export function retryAfterMs(retryAfter: string, retryAfterMsHeader: string, now = Date.now()): number {
  if (retryAfterMsHeader !== "") {
    const n = Number(retryAfterMsHeader);
    if (Number.isFinite(n) && n >= 0) return Math.ceil(n);
  }
  const s = retryAfter.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.ceil(Number(s) * 1000);
  // An HTTP date (every RFC 9110 form starts with the day name); Date.parse alone would
  // also take "-3" or "1 2" as dates.
  const t = /^[A-Za-z]/.test(s) ? Date.parse(s) : NaN;
  return Number.isNaN(t) ? -1 : Math.max(0, t - now);
}

/** Delay before attempt `attempt + 1` (`attempt` counts the attempts made so far, >= 1). */
export function retryDelayMs(s: RetrySettings, attempt: number, retryAfter: string, retryAfterMsHeader: string, random: number): number {
  const cap = Math.min(s.retry_max_delay_ms, s.retry_base_delay_ms * 2 ** (attempt - 1));
  const jitter = Math.floor(random * cap);
  const asked = retryAfterMs(retryAfter, retryAfterMsHeader);
  return Math.max(asked, jitter);
}
