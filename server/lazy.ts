/**
 * Optional dependencies loaded on first use, synchronously (they ship CommonJS builds): the
 * AWS and Google SDKs (Bedrock, Vertex), ioredis (REDIS_URL). A static import would load
 * them into every V8 isolate that imports the module, main thread and each acceptor, whether
 * the feature is configured or not: ~2 MiB of heap each, more in code and RSS
 * (docs/performance.md, "Memory").
 */
import { createRequire } from "node:module";

export const lazyRequire = createRequire(import.meta.url);
