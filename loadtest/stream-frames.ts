/**
 * The SSE events of the stream upstreams' slow and fat streams, shared by the HTTP/1.1 one
 * (loadtest/stream-upstream.ts, uWS) and the HTTP/2 one (loadtest/stream-upstream-h2.ts,
 * node:http2) so both send the same bytes. The burst and JSON replies are core/mock-reply.ts's.
 */

export const frame = (type: string, data: string): string => `event: ${type}\ndata: ${data}\n\n`;

/** message_start and content_block_start of a streamed reply. */
export function streamHeadFrames(id: string, model: string): string {
  return (
    frame(
      "message_start",
      `{"type":"message_start","message":{"id":"${id}","type":"message","role":"assistant","model":${JSON.stringify(model)},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}`,
    ) + frame("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}')
  );
}

/**
 * A slow stream's text_delta: its text is the send time (`t=<epoch ms>`, µs precision from
 * performance.timeOrigin), so a client can measure what a relay adds (loadtest/streams.ts).
 */
export function timedDeltaFrame(): string {
  return frame(
    "content_block_delta",
    `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"t=${(performance.timeOrigin + performance.now()).toFixed(3)} "}}`,
  );
}

/** content_block_stop, message_delta with the output tokens, message_stop. */
export function streamEndFrames(outputTokens: number): string {
  return (
    frame("content_block_stop", '{"type":"content_block_stop","index":0}') +
    frame(
      "message_delta",
      `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":${outputTokens}}}`,
    ) +
    frame("message_stop", '{"type":"message_stop"}')
  );
}

/** One 16 KiB text_delta of a fat ("bulk") stream. */
export const BULK_DELTA = frame(
  "content_block_delta",
  `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"${"x".repeat(16 * 1024)}"}}`,
);
