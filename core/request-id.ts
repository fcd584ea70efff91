/**
 * Request ids from a counter: `req_<process>_<thread>_<counter>`, the process part random
 * at start-up, the thread index and the counter in base 36. The `_` separators make the
 * id parse back into its three parts, so two ids are equal only when all three are: ids
 * are unique by construction across threads and replicas (without separators, thread 1's
 * 37th id was thread 37's first). No randomUUID, no hashing, no shared-memory traffic.
 *
 * A client's `x-request-id` is never the id: it is kept beside it (logs, ledger, upstream)
 * when well formed, and never trusted to be unique.
 */

const INCOMING_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const PROCESS_PART = /^[A-Za-z0-9]{1,32}$/;

export class RequestIds {
  private readonly prefix: string;
  private seq = 0;

  /** `processPart`: 1-32 letters and digits (no separator); `thread`: the acceptor index. */
  constructor(processPart: string, thread: number) {
    if (!PROCESS_PART.test(processPart))
      throw new Error(`request id prefix must be 1-32 letters or digits, got ${JSON.stringify(processPart)}`);
    if (!Number.isInteger(thread) || thread < 0) throw new Error(`thread index must be a non-negative integer, got ${thread}`);
    this.prefix = `req_${processPart}_${thread.toString(36)}_`;
  }

  next(): string {
    return this.prefix + (++this.seq).toString(36);
  }
}

/** A client's x-request-id if well formed (1-128 safe characters), else null. */
export function clientRequestId(incoming: string): string | null {
  return incoming.length > 0 && INCOMING_ID.test(incoming) ? incoming : null;
}
