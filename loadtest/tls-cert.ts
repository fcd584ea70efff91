/**
 * A throw-away self-signed certificate for 127.0.0.1, made with `openssl` when a test or a
 * load test needs a TLS upstream (the HTTP/2 stream upstream: undici speaks h2 over TLS only).
 * The gateway trusts it through NODE_EXTRA_CA_CERTS in that run's environment only; nothing in
 * the gateway weakens certificate checks.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export interface CertFiles {
  cert: string;
  key: string;
}

/** Writes `cert.pem` and `key.pem` (P-256, valid 2 days, SAN IP:127.0.0.1 and localhost) into `dir`. */
export function selfSignedCert(dir: string): CertFiles {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 },
  );
  return { cert, key };
}
