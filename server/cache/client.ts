/**
 * An acceptor thread's side of the response cache: asks the owner thread (server/cache/owner.ts)
 * over its MessagePort. Lookups are matched to answers by a counter id; a store is a one-way
 * message whose buffer is transferred, not copied. The port is unref'd: pending lookups never
 * keep a draining thread alive (the request's own socket does, until it is answered or closed).
 */
import type { MessagePort } from "node:worker_threads";
import type { FromOwner, ToOwner } from "./owner.js";

export type Lookup = (entry: Uint8Array | null, age: number) => void;

export class CacheClient {
  private readonly port: MessagePort;
  private readonly pending = new Map<number, Lookup>();
  private seq = 0;

  constructor(port: MessagePort) {
    this.port = port;
    port.on("message", (m: FromOwner) => {
      const cb = this.pending.get(m.id);
      if (cb === undefined) return;
      this.pending.delete(m.id);
      cb(m.entry, m.age);
    });
    port.unref();
  }

  get(key: string, cb: Lookup): void {
    const id = ++this.seq;
    this.pending.set(id, cb);
    this.port.postMessage({ t: "get", id, key } satisfies ToOwner);
  }

  /** `entry` must own its ArrayBuffer (core/cache/entry.ts encodeEntry): it is moved to the owner. */
  put(key: string, entry: Uint8Array): void {
    this.port.postMessage({ t: "put", key, entry } satisfies ToOwner, [entry.buffer as ArrayBuffer]);
  }
}
