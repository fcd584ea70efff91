/**
 * `npm run demo`: the gateway on its embedded defaults: 127.0.0.1, the built-in mock
 * provider as the default route, a demo client key. Environment settings still win.
 * The mock (core/mock-reply.ts) answers each prompt and calls a tool only when asked
 * ("use the Read tool on FILE"), so a Claude Code session against it works end to end.
 */
import { main } from "./main.js";

const DEMO_KEY = "sk-portcullis-demo-key";
const env = process.env;
env.HOST ??= "127.0.0.1";
env.PORT ??= "8080";
env.MODEL_PROVIDER ??= "mock";
env.GATEWAY_API_KEYS ??= DEMO_KEY;
env.HTTP_THREADS ??= "1";

await main();
const key = env.GATEWAY_API_KEYS.split(",")[0]!.trim();
process.stderr.write(
  `\nPortcullis demo is up (mock provider, no network).\n` +
    `Point Claude Code at it:\n\n  ANTHROPIC_BASE_URL=http://${env.HOST}:${env.PORT} ANTHROPIC_API_KEY=${key} claude\n\n` +
    `The mock answers your prompt; to see a tool call, ask "use the Read tool on README.md" or "use the Bash tool to run ls".\n` +
    `Try: curl -s http://${env.HOST}:${env.PORT}/v1/messages -H 'x-api-key: ${key}' -H 'content-type: application/json' ` +
    `-d '{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}'\n` +
    `Metrics: http://${env.HOST}:${env.PORT}/metrics/prometheus   Ctrl-C stops it gracefully.\n\n`,
);
