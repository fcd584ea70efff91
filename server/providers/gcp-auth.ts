/**
 * OAuth2 access tokens for Vertex AI with Google's google-auth-library (10.x, the line that
 * runs on Node 20): from a service-account JSON (the JWT-bearer grant) or, without one, the
 * metadata server (GKE workload identity, GCE). The token is fetched at start-up and
 * refreshed by a timer before it expires; a request only reads the token in memory.
 *
 * The library posts the JWT-bearer grant to Google's fixed token URL. A key file whose
 * `token_uri` names another endpoint (private Google access, a test's mock) has that URL
 * honoured by a fetch wrapper handed to the library's transport.
 */
import { readFileSync } from "node:fs";
import type { GoogleAuth, OAuth2Client } from "google-auth-library";
import type { Logger } from "pino";
import { lazyRequire } from "../lazy.js";
import { ConfigError, type GatewayConfig } from "../../core/config.js";

const SCOPE = "https://www.googleapis.com/auth/cloud-platform";
const GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token";
const REFRESH_MARGIN_MS = 5 * 60_000;
const RETRY_MIN_MS = 1_000,
  RETRY_MAX_MS = 60_000;

/**
 * Start-up check of every vertex provider's service-account file: readable JSON with
 * `client_email` and `private_key`. A bad file stops the start naming the setting.
 */
export function checkVertexCredentials(cfg: GatewayConfig, fileSetting: (provider: string) => string): void {
  for (const p of cfg.providers) {
    if (p.type !== "vertex" || p.credentialsFile == null) continue;
    const setting = fileSetting(p.name);
    let v: { client_email?: unknown; private_key?: unknown; type?: unknown };
    try {
      v = JSON.parse(readFileSync(p.credentialsFile, "utf8")) as typeof v;
    } catch (e) {
      throw new ConfigError(
        setting,
        `cannot read ${JSON.stringify(p.credentialsFile)} as JSON: ${(e as NodeJS.ErrnoException).code ?? "invalid JSON"}`,
      );
    }
    if (v.type === "service_account" && (typeof v.client_email !== "string" || typeof v.private_key !== "string")) {
      throw new ConfigError(setting, `${JSON.stringify(p.credentialsFile)} is a service-account file without client_email and private_key`);
    }
  }
}

/** A fetch that sends Google's token URL to `tokenUri` instead. */
function redirectingFetch(tokenUri: string): typeof fetch {
  return (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    return fetch(url === GOOGLE_TOKEN_URL ? tokenUri : input, init);
  };
}

export class GcpTokens {
  private token: string | null = null;
  private lastError = "";
  private failures = 0;
  private readonly auth: GoogleAuth;
  private readonly provider: string;
  private readonly log: Logger;
  private client: OAuth2Client | null = null;
  readonly ready: Promise<void>;

  /** `keyFile`: a service-account JSON; null = the metadata server. */
  constructor(provider: string, keyFile: string | null, log: Logger) {
    this.provider = provider;
    this.log = log;
    let fetchImplementation: typeof fetch | undefined;
    if (keyFile !== null) {
      const tokenUri = (JSON.parse(readFileSync(keyFile, "utf8")) as { token_uri?: unknown }).token_uri;
      if (typeof tokenUri === "string" && tokenUri !== GOOGLE_TOKEN_URL) fetchImplementation = redirectingFetch(tokenUri);
    }
    const { GoogleAuth } = lazyRequire("google-auth-library") as typeof import("google-auth-library");
    this.auth = new GoogleAuth({
      ...(keyFile !== null ? { keyFile } : {}),
      scopes: [SCOPE],
      ...(fetchImplementation !== undefined ? { clientOptions: { transporterOptions: { fetchImplementation } } } : {}),
    });
    this.ready = this.refresh();
  }

  /** The bearer token, waiting for the first fetch if it is still running; throws when there is none. */
  async get(): Promise<string> {
    if (this.token === null) await this.ready;
    if (this.token === null) throw new Error(`no Google access token for provider ${this.provider}: ${this.lastError}`);
    return this.token;
  }

  current(): string | null {
    return this.token;
  }

  private async refresh(): Promise<void> {
    try {
      this.client ??= (await this.auth.getClient()) as OAuth2Client;
      const { credentials } = await this.client.refreshAccessToken();
      if (typeof credentials.access_token !== "string" || credentials.access_token === "")
        throw new Error("the token endpoint returned no access_token");
      const first = this.token === null;
      this.token = credentials.access_token;
      this.failures = 0;
      const exp = credentials.expiry_date ?? Date.now() + 3600_000;
      if (first) this.log.info({ provider: this.provider, expires: new Date(exp).toISOString() }, "Google access token loaded");
      const left = exp - Date.now();
      this.schedule(Math.max(RETRY_MIN_MS, left - Math.min(REFRESH_MARGIN_MS, left / 2)));
    } catch (e) {
      this.lastError = (e as Error)?.message ?? String(e);
      this.failures++;
      this.log.warn({ provider: this.provider, err: this.lastError, failures: this.failures }, "Google access token refresh failed");
      this.schedule(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1)));
    }
  }

  private schedule(ms: number): void {
    setTimeout(() => void this.refresh(), ms).unref();
  }
}
