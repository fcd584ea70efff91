/**
 * Request ids from a counter: `req_` + a prefix fixed at start-up (random per process,
 * plus the acceptor thread's index) + a per-thread counter in base 36. No randomUUID,
 * no hashing and no shared-memory traffic per request; the prefix keeps threads and
 * replicas apart.
 */

const INCOMING_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export class RequestIds {
  private readonly prefix: string;
  private seq = 0;

  constructor(prefix: string) {
    this.prefix = "req_" + prefix;
  }

  next(): string {
    return this.prefix + (++this.seq).toString(36);
  }

  /** An incoming x-request-id if well formed (1-128 safe characters), else a new id. */
  fromHeader(incoming: string): string {
    return incoming.length > 0 && INCOMING_ID.test(incoming) ? incoming : this.next();
  }
}
