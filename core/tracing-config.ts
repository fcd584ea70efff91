/**
 * OpenTelemetry settings (docs/tracing.md): the standard OTEL_* variables, read and
 * checked at start-up like every other setting. Tracing is on when an OTLP endpoint is
 * set (and OTEL_SDK_DISABLED is not true); every variable is read either way, so a typo
 * stops the start even while tracing is off.
 */
import { ConfigError, envBool, envInt, envStr, type Env } from "./env.js";

export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio";
const SAMPLERS: readonly SamplerName[] = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
];

export interface TracingConfig {
  /** The full OTLP/HTTP traces URL (…/v1/traces). */
  url: string;
  headers: Readonly<Record<string, string>>;
  serviceName: string;
  sampler: SamplerName;
  /** For the *traceidratio samplers, 0..1. */
  ratio: number;
  scheduleDelayMs: number;
  maxQueueSize: number;
  maxExportBatchSize: number;
  exportTimeoutMs: number;
}

function httpUrl(name: string, v: string): URL {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(name, `expected an http(s) URL, got ${JSON.stringify(v)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ConfigError(name, `expected an http(s) URL, got ${JSON.stringify(v)}`);
  return u;
}

/** `k=v,k2=v2` with percent-encoded values (the OTLP exporter spec's format). */
function headerList(name: string, v: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (v === null) return out;
  for (const part of v.split(",")) {
    if (part.trim() === "") continue;
    const i = part.indexOf("=");
    const k = i > 0 ? part.slice(0, i).trim().toLowerCase() : "";
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(k)) throw new ConfigError(name, "expected key=value pairs separated by commas");
    let val: string;
    try {
      val = decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      throw new ConfigError(name, `the value of ${k} is not valid percent-encoding`);
    }
    if (/[\r\n\0]/.test(val)) throw new ConfigError(name, `the value of ${k} has a control character`);
    out[k] = val;
  }
  return out;
}

export function loadTracingConfig(env: Env): TracingConfig | null {
  const base = envStr(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  const traces = envStr(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const headers = {
    ...headerList("OTEL_EXPORTER_OTLP_HEADERS", envStr(env, "OTEL_EXPORTER_OTLP_HEADERS")),
    ...headerList("OTEL_EXPORTER_OTLP_TRACES_HEADERS", envStr(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")),
  };
  const serviceName = envStr(env, "OTEL_SERVICE_NAME") ?? "portcullis";
  const sampler = (envStr(env, "OTEL_TRACES_SAMPLER") ?? "parentbased_always_on").toLowerCase() as SamplerName;
  if (!SAMPLERS.includes(sampler)) throw new ConfigError("OTEL_TRACES_SAMPLER", `expected one of ${SAMPLERS.join(", ")}`);
  const ratioRaw = envStr(env, "OTEL_TRACES_SAMPLER_ARG");
  const ratio = ratioRaw === null ? 1 : Number(ratioRaw);
  if (!/^\d+(\.\d+)?$/.test(ratioRaw ?? "1") || !(ratio >= 0 && ratio <= 1))
    throw new ConfigError("OTEL_TRACES_SAMPLER_ARG", `expected a ratio from 0 to 1, got ${JSON.stringify(ratioRaw)}`);
  const scheduleDelayMs = envInt(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, 1, 600_000);
  const maxQueueSize = envInt(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1, 1_000_000);
  const maxExportBatchSize = envInt(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1, 1_000_000);
  if (maxExportBatchSize > maxQueueSize)
    throw new ConfigError("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", `must not exceed OTEL_BSP_MAX_QUEUE_SIZE (${maxQueueSize})`);
  const exportTimeoutMs = envInt(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000, 1, 600_000);
  const disabled = envBool(env, "OTEL_SDK_DISABLED", false);
  let url: string | null = null;
  if (traces !== null) url = httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces).href;
  else if (base !== null) url = httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT", base).href.replace(/\/?$/, "/v1/traces");
  if (url === null || disabled) return null;
  return Object.freeze({
    url,
    headers: Object.freeze(headers),
    serviceName,
    sampler,
    ratio,
    scheduleDelayMs,
    maxQueueSize,
    maxExportBatchSize,
    exportTimeoutMs,
  });
}
