/**
 * A free TCP port on loopback, for a process that must be told its port up front (Prometheus,
 * the demo's banner, the load-test stack). Another process may take it before it is used:
 * only use it where nothing else on the machine picks ports in that range at the same moment.
 */
import { createServer } from "node:net";

export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a !== null ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}
