/**
 * glibc's `malloc_trim(0)`: hands every free page of every malloc arena back to the OS.
 * glibc returns freed memory of a per-thread arena only from the arena's top, so after a
 * burst the arenas keep ~60 MiB of free chunks resident between the few still in use
 * (measured in docs/performance.md, "Memory"); Node has no call for it, so it goes through
 * koffi's FFI, loaded on first use. Null where there is no glibc (musl, macOS) or the FFI
 * does not load: the memory then stays with the allocator, as before.
 */
import { createRequire } from "node:module";

let trim: (() => number) | null | undefined;

/** The trim function, or null where it cannot be had (decided once per thread). */
export function mallocTrim(): (() => number) | null {
  if (trim !== undefined) return trim;
  trim = null;
  if (process.platform !== "linux") return trim;
  try {
    // Only glibc has malloc_trim; musl's libc has no such symbol and the lookup throws.
    const koffi = createRequire(import.meta.url)("koffi") as typeof import("koffi");
    const fn = koffi.load("libc.so.6").func("int malloc_trim(size_t)") as (pad: number) => number;
    trim = () => fn(0);
  } catch {
    // no glibc, or no FFI on this platform
  }
  return trim;
}
