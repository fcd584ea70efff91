/**
 * Upstreams are asked for `accept-encoding: identity`, but one may compress anyway (a
 * proxy in front of it, say). The reply is then decoded with a node:zlib stream before it
 * is relayed or its usage read: relaying gzip bytes labelled JSON would hand clients
 * garbage and read no usage (a request charged nothing).
 */
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import type { Transform } from "node:stream";

/** A decoder for this content-encoding; null for identity; "unsupported" for anything else. */
export function decoderFor(contentEncoding: string | string[] | undefined): Transform | null | "unsupported" {
  if (contentEncoding === undefined) return null;
  const v = (Array.isArray(contentEncoding) ? contentEncoding.join(",") : contentEncoding).trim().toLowerCase();
  if (v === "" || v === "identity") return null;
  // A truncated input fails on end ("unexpected end of file"): a cut reply is never relayed as whole.
  if (v === "gzip" || v === "x-gzip") return createGunzip();
  if (v === "deflate") return createInflate();
  if (v === "br") return createBrotliDecompress();
  return "unsupported";
}
