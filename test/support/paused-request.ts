/**
 * A raw POST /v1/messages whose client reads nothing until `read()` is called: the slow
 * reader the backpressure tests need (the socket is paused before it connects, so the
 * kernel buffers fill and the gateway sees the client behind). `read()` resumes it and
 * resolves with everything received, once the gateway closes the connection.
 */
import { connect } from "node:net";
import { once } from "node:events";

export async function pausedRequest(port: number, headers: Record<string, string>, body: string): Promise<{ read(): Promise<string> }> {
  const s = connect(port, "127.0.0.1");
  s.pause();
  await once(s, "connect");
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  s.write(
    `POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  return {
    async read() {
      const parts: string[] = [];
      s.setEncoding("latin1");
      s.on("data", (d: string) => parts.push(d));
      s.resume();
      await once(s, "close");
      return parts.join("");
    },
  };
}
