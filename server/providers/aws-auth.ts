/**
 * SigV4 for Bedrock with AWS's own signer (@smithy/signature-v4 over node:crypto via
 * @smithy/hash-node), and credentials from AWS's standard chain (@aws-sdk/credential-provider-node:
 * environment, shared config/SSO, web identity for EKS IRSA, the container endpoint for ECS
 * and EKS Pod Identity, IMDS). Credentials are fetched at start-up and refreshed by a timer
 * before they expire, so a request only signs with what is already in memory; only a
 * request that arrives before the first fetch finishes waits for it.
 */
import type { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentity } from "@smithy/types";
import type { Logger } from "pino";
import { lazyRequire } from "../lazy.js";

type CredentialSource = (opts?: { forceRefresh?: boolean }) => Promise<AwsCredentialIdentity>;

/** Refresh this long before expiry (or at half the lifetime of short-lived credentials). */
const REFRESH_MARGIN_MS = 5 * 60_000;
const RETRY_MIN_MS = 1_000,
  RETRY_MAX_MS = 60_000;

/** AWS's standard credential chain, loaded only when a Bedrock provider has no bearer token. */
function awsChain(): CredentialSource {
  const sdk = lazyRequire("@aws-sdk/credential-provider-node") as typeof import("@aws-sdk/credential-provider-node");
  return sdk.defaultProvider() as CredentialSource;
}

export class AwsCredentials {
  private creds: AwsCredentialIdentity | null = null;
  private lastError = "";
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly source: CredentialSource;
  private readonly log: Logger;
  private readonly provider: string;
  /** Resolves after the first fetch, successful or not. */
  readonly ready: Promise<void>;

  constructor(provider: string, log: Logger, source: CredentialSource = awsChain()) {
    this.provider = provider;
    this.log = log;
    this.source = source;
    this.ready = this.refresh(false);
  }

  /** The credentials in memory, or null before the first successful fetch. */
  current(): AwsCredentialIdentity | null {
    return this.creds;
  }

  /** Credentials, waiting for the first fetch if it is still running; throws when there are none. */
  async get(): Promise<AwsCredentialIdentity> {
    if (this.creds === null) await this.ready;
    if (this.creds === null) throw new Error(`no AWS credentials for provider ${this.provider}: ${this.lastError}`);
    return this.creds;
  }

  private async refresh(force: boolean): Promise<void> {
    this.timer = null;
    try {
      const c = await this.source({ forceRefresh: force });
      const first = this.creds === null;
      this.creds = c;
      this.failures = 0;
      if (first) this.log.info({ provider: this.provider, expires: c.expiration?.toISOString() ?? null }, "AWS credentials loaded");
      if (c.expiration !== undefined) {
        const left = c.expiration.getTime() - Date.now();
        this.schedule(Math.max(RETRY_MIN_MS, left - Math.min(REFRESH_MARGIN_MS, left / 2)));
      }
    } catch (e) {
      this.lastError = (e as Error)?.message ?? String(e);
      this.failures++;
      this.log.warn({ provider: this.provider, err: this.lastError, failures: this.failures }, "AWS credentials refresh failed");
      this.schedule(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1)));
    }
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.refresh(true), ms);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Signs Bedrock requests for one provider; returns the headers to send (signed ones included). */
export class BedrockSigner {
  private readonly signer: SignatureV4;
  private readonly hostname: string;
  private readonly port: number | undefined;
  private readonly protocol: string;
  private readonly host: string;

  constructor(origin: string, region: string, creds: AwsCredentials) {
    const u = new URL(origin);
    this.hostname = u.hostname;
    this.port = u.port === "" ? undefined : Number(u.port);
    this.protocol = u.protocol;
    this.host = u.host;
    const { SignatureV4 } = lazyRequire("@smithy/signature-v4") as typeof import("@smithy/signature-v4");
    const { Hash } = lazyRequire("@smithy/hash-node") as typeof import("@smithy/hash-node");
    this.signer = new SignatureV4({ credentials: () => creds.get(), region, service: "bedrock", sha256: Hash.bind(null, "sha256") });
  }

  /** Sign a POST of `body` to `path` with `headers` (lower-case names); resolves with every header to send. */
  async sign(path: string, headers: Record<string, string>, body: Buffer): Promise<Record<string, string>> {
    const signed = await this.signer.sign({
      method: "POST",
      protocol: this.protocol,
      hostname: this.hostname,
      port: this.port,
      path,
      query: {},
      headers: { ...headers, host: this.host },
      body,
    });
    return signed.headers;
  }
}
