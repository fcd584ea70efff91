/**
 * Vertex AI's shape for Claude, as pure transforms: the model and the operation are in the
 * path (`…/publishers/anthropic/models/{model}:rawPredict` or `:streamRawPredict`), the body
 * is the Messages body without `model`, with `anthropic_version: "vertex-2023-10-16"`; betas
 * travel in the `anthropic-beta` header, as on Anthropic's API. Token counting is its own
 * model, `count-tokens:rawPredict`, which keeps `model` in the body.
 */

export const VERTEX_VERSION = "vertex-2023-10-16";

export function vertexPath(basePath: string, project: string, location: string, model: string, stream: boolean, count: boolean): string {
  const m = count ? "count-tokens" : encodeURIComponent(model).replace(/%40/g, "@");
  const op = !count && stream ? "streamRawPredict" : "rawPredict";
  return `${basePath}/v1/projects/${encodeURIComponent(project)}/locations/${encodeURIComponent(location)}/publishers/anthropic/models/${m}:${op}`;
}

export function vertexBody(parsed: Record<string, unknown>, model: string, drop: readonly string[], count: boolean): Buffer {
  const out: Record<string, unknown> = { anthropic_version: VERTEX_VERSION };
  for (const k in parsed) {
    if (k === "model" || drop.includes(k)) continue;
    out[k] = parsed[k];
  }
  if (count) out.model = model;
  return Buffer.from(JSON.stringify(out));
}

/** The message of a Google API error body (`{"error":{"message"}}`, or a one-element list of them), or "". */
export function googleErrorMessage(body: Buffer): string {
  try {
    let v = JSON.parse(body.toString("utf8")) as unknown;
    if (Array.isArray(v)) v = v[0];
    const m = (v as { error?: { message?: unknown } } | null)?.error?.message;
    return typeof m === "string" ? m : "";
  } catch {
    return "";
  }
}
