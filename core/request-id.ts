/**
 * Request ids from a process-wide counter in the shared metrics buffer: `req_` + a prefix
 * fixed at start-up + the counter in base 36. No randomUUID, no hashing per request.
 */
import { S_REQUEST_ID, type Metrics } from "./metrics.js";

const INCOMING_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export class RequestIds {
  private readonly prefix: string;
  private readonly metrics: Metrics;

  /** `prefix` should differ per process (e.g. random at start-up) so replicas don't collide. */
  constructor(metrics: Metrics, prefix: string) {
    this.metrics = metrics;
    this.prefix = "req_" + prefix;
  }

  next(): string {
    return this.prefix + this.metrics.nextSeq(S_REQUEST_ID).toString(36);
  }

  /** An incoming x-request-id if well formed (1-128 safe characters), else a new id. */
  fromHeader(incoming: string): string {
    return incoming.length > 0 && INCOMING_ID.test(incoming) ? incoming : this.next();
  }
}
