/**
 * The mock upstream's Bedrock mode (imported by loadtest/mock-upstream.ts): it answers
 * `POST /model/{id}/invoke`, `/invoke-with-response-stream` and `/count-tokens` the way
 * Bedrock does, and is strict where Bedrock is strict, so a gateway bug shows up as a
 * failed request:
 *  - every request is authenticated: a Bedrock API key (`--bedrock-api-key`) as a bearer, or
 *    SigV4, re-computed with AWS's own signer (@smithy/signature-v4) from the request as
 *    received and compared with the client's Authorization header;
 *  - the body must carry `anthropic_version: "bedrock-2023-05-31"` and no `model` or
 *    `stream`; each `anthropic_beta` must be one Bedrock knows ("invalid beta flag");
 *  - streams are AWS event-stream frames with CRCs (@smithy/eventstream-codec), each
 *    holding one Anthropic event as base64 `bytes`; fault `aws-exception:<name>` sends that
 *    exception frame first, or after `stream-error:<n>` events; on count-tokens,
 *    `aws-exception:validationException` answers that the model cannot count tokens.
 * It can also act as the container credentials endpoint (`GET /__aws/credentials`), issuing
 * short-lived credentials (`--aws-credentials-ttl`) so the gateway's refresh is exercised.
 */
import { SignatureV4 } from "@smithy/signature-v4";
import { Hash } from "@smithy/hash-node";
import { EventStreamCodec } from "@smithy/eventstream-codec";
import { fromUtf8, toUtf8 } from "@smithy/util-utf8";
import { defaultPolicy } from "../core/beta-policy.js";
import { mockCountTokens, mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";

export interface BedrockMockOptions {
  /** Static credentials accepted for SigV4 (`--aws-credentials AKID:SECRET[:TOKEN]`). */
  staticKey: { id: string; secret: string; token: string | undefined } | null;
  /** `--bedrock-api-key`: accepted as `Authorization: Bearer`. */
  apiKey: string | null;
  /** Lifetime of credentials issued by /__aws/credentials, in seconds. */
  issuedTtlS: number;
}

/** What the mock's handler needs from the HTTP layer. */
export interface MockIO {
  json(status: number, body: string, extra?: Array<[string, string]>): void;
  /** Write frames as a 200 stream with this content type (slow/cut faults apply). */
  stream(frames: Array<string | Buffer>, contentType: string): void;
}

export interface BedrockFault {
  status?: number;
  awsException?: string;
  streamError?: number;
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);
const KNOWN_BETAS = new Set(defaultPolicy("bedrock").pass_betas);
const issued = new Map<string, { secret: string; token: string; expires: number }>();
let issuedSeq = 0;

/** One Anthropic SSE frame (`event: x\ndata: {...}\n\n`) as a Bedrock `chunk` message. */
export function chunkFrame(sse: string): Buffer {
  const d = sse.indexOf("\ndata: ");
  const json = sse.slice(d + 7).replace(/\n+$/, "");
  const payload = JSON.stringify({ bytes: Buffer.from(json).toString("base64"), p: "abcdefghij".slice(0, json.length % 10) });
  return Buffer.from(
    codec.encode({
      headers: {
        ":event-type": { type: "string", value: "chunk" },
        ":content-type": { type: "string", value: "application/json" },
        ":message-type": { type: "string", value: "event" },
      },
      body: fromUtf8(payload),
    }),
  );
}

/** An in-stream exception message, as Bedrock sends it. */
export function exceptionFrame(name: string, message: string): Buffer {
  return Buffer.from(
    codec.encode({
      headers: {
        ":exception-type": { type: "string", value: name },
        ":content-type": { type: "string", value: "application/json" },
        ":message-type": { type: "string", value: "exception" },
      },
      body: fromUtf8(JSON.stringify({ message })),
    }),
  );
}

/** `GET /__aws/credentials`: fresh short-lived credentials in the container-endpoint format. */
export function issueCredentials(o: BedrockMockOptions): string {
  const id = `ASIAMOCK${String(++issuedSeq).padStart(8, "0")}`;
  const secret = `mock-secret-${issuedSeq}-${Math.random().toString(36).slice(2)}`;
  const token = `mock-token-${issuedSeq}`;
  const expires = Date.now() + o.issuedTtlS * 1000;
  issued.set(id, { secret, token, expires });
  return JSON.stringify({ AccessKeyId: id, SecretAccessKey: secret, Token: token, Expiration: new Date(expires).toISOString() });
}

const AUTH_RE =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/;

/** null if the request is authentic, else why not. Re-signs with the same package and compares. */
export async function verifyAuth(
  o: BedrockMockOptions,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<string | null> {
  const auth = headers["authorization"] ?? "";
  if (auth.startsWith("Bearer ")) {
    if (o.apiKey === null || auth.slice(7) !== o.apiKey) return "invalid bearer token";
    return null;
  }
  const m = AUTH_RE.exec(auth);
  if (m === null) return "missing or malformed SigV4 Authorization header";
  const [, keyId, , region, service, signedList] = m as unknown as string[];
  if (service !== "bedrock") return `signed for service ${service}, expected bedrock`;
  let secret: string, token: string | undefined;
  const iss = issued.get(keyId!);
  if (o.staticKey !== null && keyId === o.staticKey.id) {
    secret = o.staticKey.secret;
    token = o.staticKey.token;
  } else if (iss !== undefined) {
    if (iss.expires < Date.now()) return "the security token included in the request is expired";
    secret = iss.secret;
    token = iss.token;
  } else return "unknown access key id";
  if (token !== undefined && headers["x-amz-security-token"] !== token) return "missing or wrong x-amz-security-token";
  const amzDate = headers["x-amz-date"] ?? "";
  const dm = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (dm === null) return "missing x-amz-date";
  const date = new Date(Date.UTC(+dm[1]!, +dm[2]! - 1, +dm[3]!, +dm[4]!, +dm[5]!, +dm[6]!));
  if (Math.abs(Date.now() - date.getTime()) > 5 * 60_000) return "signature expired (x-amz-date too far from now)";
  const signedHeaders: Record<string, string> = {};
  for (const h of signedList!.split(";")) {
    if (headers[h] === undefined) return `signed header ${h} is missing`;
    signedHeaders[h] = headers[h]!;
  }
  const host = headers["host"] ?? "";
  const signer = new SignatureV4({
    credentials: { accessKeyId: keyId!, secretAccessKey: secret, sessionToken: token },
    region: region!,
    service: "bedrock",
    sha256: Hash.bind(null, "sha256"),
  });
  const c = host.lastIndexOf(":");
  const expected = await signer.sign(
    {
      method: "POST",
      protocol: "http:",
      hostname: c > 0 ? host.slice(0, c) : host,
      port: c > 0 ? Number(host.slice(c + 1)) : undefined,
      path,
      query: {},
      headers: signedHeaders,
      body,
    },
    { signingDate: date },
  );
  if (expected.headers["authorization"] !== auth) return "the request signature we calculated does not match the signature you provided";
  return null;
}

function awsError(io: MockIO, status: number, name: string, message: string): void {
  io.json(status, JSON.stringify({ message }), [["x-amzn-errortype", `${name}:http://internal.amazon.com/coral/com.amazon.bedrock/`]]);
}

const PATH_RE = /^\/model\/([^/]+)\/(invoke|invoke-with-response-stream|count-tokens)\/?$/;

/** True when the path is one of Bedrock's. */
export function isBedrockPath(path: string): boolean {
  return PATH_RE.test(path);
}

/** Answers one authenticated-or-not Bedrock request. */
export async function handleBedrock(
  o: BedrockMockOptions,
  io: MockIO,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  fault: BedrockFault | undefined,
  events: number,
  id: string,
): Promise<void> {
  const pm = PATH_RE.exec(path)!;
  const model = decodeURIComponent(pm[1]!);
  const op = pm[2]!;
  const why = await verifyAuth(o, path, headers, body);
  if (why !== null) return awsError(io, 403, "UnrecognizedClientException", why);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
  } catch {
    return awsError(io, 400, "ValidationException", "Malformed input request");
  }
  if (op === "count-tokens") {
    const inner = (json.input as { invokeModel?: { body?: unknown } } | undefined)?.invokeModel?.body;
    if (typeof inner !== "string") return awsError(io, 400, "ValidationException", "input.invokeModel.body is required");
    json = JSON.parse(Buffer.from(inner, "base64").toString("utf8")) as Record<string, unknown>;
  }
  const bad = checkBody(json);
  if (bad !== null) return awsError(io, 400, "ValidationException", bad);
  if (op === "count-tokens" && fault?.awsException === "validationException") {
    return awsError(io, 400, "ValidationException", "The provided model doesn't support counting tokens.");
  }
  if (fault?.status !== undefined && fault.status !== 200) {
    const name =
      fault.status === 429 ? "ThrottlingException" : fault.status === 503 ? "ServiceUnavailableException" : "InternalServerException";
    return awsError(io, fault.status, name, fault.status === 429 ? "Too many requests, please wait before trying again." : "mock fault");
  }
  const req = { ...json, model } as unknown as MockRequest;
  if (op === "count-tokens") return io.json(200, `{"inputTokens":${mockCountTokens(req)}}`);
  if (op === "invoke") return io.json(200, mockMessageJson(req, id));
  let frames: Buffer[] = mockStreamFrames(req, id, events).map(chunkFrame);
  if (fault?.awsException !== undefined) {
    const n = Math.min(fault.streamError ?? 0, frames.length);
    frames = [...frames.slice(0, n), exceptionFrame(fault.awsException, "mock exception")];
  }
  io.stream(frames, "application/vnd.amazon.eventstream");
}

/** Bedrock's own checks on an InvokeModel body for Claude; null if it passes. */
function checkBody(json: Record<string, unknown>): string | null {
  if (json.anthropic_version !== "bedrock-2023-05-31") return "anthropic_version: bedrock-2023-05-31 is required";
  if ("model" in json) return "extraneous key [model] is not permitted";
  if ("stream" in json) return "extraneous key [stream] is not permitted";
  const betas = json.anthropic_beta;
  if (betas !== undefined) {
    if (!Array.isArray(betas)) return "anthropic_beta must be an array";
    for (const b of betas) if (!KNOWN_BETAS.has(b as string)) return `invalid beta flag: ${String(b)}`;
  }
  if (!Array.isArray(json.messages)) return "messages: field required";
  return null;
}
