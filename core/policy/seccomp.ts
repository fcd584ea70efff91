/**
 * The sandbox's seccomp filter, built here as a classic-BPF program (no libseccomp, no
 * native build step) and handed to bwrap with `--seccomp FD`. It denies the system calls
 * a command needs only to climb out of its namespaces or to poke at the kernel: new
 * namespaces (`unshare`, `setns`), mounts and root changes, `ptrace` and cross-process
 * memory, `bpf`, the kernel keyring, `perf_event_open`, module and kexec loading,
 * `userfaultfd` and `open_by_handle_at`. A denied call fails with EPERM; every other call
 * is allowed. A call made through a foreign ABI (i386 `int 0x80`, x32) kills the process,
 * so the numbers below cannot be dodged by switching tables. Pure: the caller picks the
 * architecture and writes the bytes.
 */

/** The calls the filter denies, by name (same list for every architecture). */
export const DENIED_SYSCALLS = [
  "unshare",
  "setns",
  "mount",
  "umount2",
  "pivot_root",
  "open_tree",
  "move_mount",
  "fsopen",
  "fsconfig",
  "fsmount",
  "fspick",
  "mount_setattr",
  "ptrace",
  "process_vm_readv",
  "process_vm_writev",
  "bpf",
  "keyctl",
  "add_key",
  "request_key",
  "perf_event_open",
  "init_module",
  "finit_module",
  "delete_module",
  "kexec_load",
  "kexec_file_load",
  "userfaultfd",
  "open_by_handle_at",
] as const;
type Denied = (typeof DENIED_SYSCALLS)[number];

interface Arch {
  /** AUDIT_ARCH_* value seccomp_data.arch carries for the native ABI. */
  audit: number;
  /** Syscall numbers at or above this belong to another ABI (x32); 0 = none. */
  foreignFrom: number;
  nr: Record<Denied, number>;
}

const COMMON_NEW = { open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442 };

/** From <asm/unistd_64.h> (x86_64) and <asm-generic/unistd.h> (aarch64). */
export const ARCHES: Readonly<Record<string, Arch>> = {
  x64: {
    audit: 0xc000003e,
    foreignFrom: 0x40000000,
    nr: {
      ...COMMON_NEW,
      unshare: 272,
      setns: 308,
      mount: 165,
      umount2: 166,
      pivot_root: 155,
      ptrace: 101,
      process_vm_readv: 310,
      process_vm_writev: 311,
      bpf: 321,
      keyctl: 250,
      add_key: 248,
      request_key: 249,
      perf_event_open: 298,
      init_module: 175,
      finit_module: 313,
      delete_module: 176,
      kexec_load: 246,
      kexec_file_load: 320,
      userfaultfd: 323,
      open_by_handle_at: 304,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    foreignFrom: 0,
    nr: {
      ...COMMON_NEW,
      unshare: 97,
      setns: 268,
      mount: 40,
      umount2: 39,
      pivot_root: 41,
      ptrace: 117,
      process_vm_readv: 270,
      process_vm_writev: 271,
      bpf: 280,
      keyctl: 219,
      add_key: 217,
      request_key: 218,
      perf_event_open: 241,
      init_module: 105,
      finit_module: 273,
      delete_module: 106,
      kexec_load: 104,
      kexec_file_load: 294,
      userfaultfd: 282,
      open_by_handle_at: 265,
    },
  },
};

// Classic BPF opcodes and seccomp return values (<linux/filter.h>, <linux/seccomp.h>).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const OFF_NR = 0;
const OFF_ARCH = 4;

/**
 * The filter for `arch` (a `process.arch` value) as the bytes of a `struct sock_filter[]`
 * in host byte order, or null when the architecture is not in the table.
 */
export function seccompProgram(arch: string): Buffer | null {
  const a = ARCHES[arch];
  if (a === undefined) return null;
  const ins: [number, number, number, number][] = [];
  const nrs = DENIED_SYSCALLS.map((n) => a.nr[n]);
  // Layout: [0] ld arch; [1] jeq native ? 0 : kill; [2] ld nr; [3] (jge foreign -> kill);
  // then one jeq per denied call -> deny; then allow, deny, kill.
  const head = a.foreignFrom > 0 ? 4 : 3;
  const allowAt = head + nrs.length;
  const denyAt = allowAt + 1;
  const killAt = denyAt + 1;
  ins.push([LD_W_ABS, 0, 0, OFF_ARCH]);
  ins.push([JEQ_K, 0, killAt - 2, a.audit]);
  ins.push([LD_W_ABS, 0, 0, OFF_NR]);
  if (a.foreignFrom > 0) ins.push([JGE_K, killAt - 4, 0, a.foreignFrom]);
  nrs.forEach((nr, i) => ins.push([JEQ_K, denyAt - (head + i) - 1, 0, nr]));
  ins.push([RET_K, 0, 0, RET_ALLOW]);
  ins.push([RET_K, 0, 0, RET_ERRNO | EPERM]);
  ins.push([RET_K, 0, 0, RET_KILL_PROCESS]);
  const buf = Buffer.alloc(ins.length * 8);
  ins.forEach(([code, jt, jf, k], i) => {
    if (jt > 255 || jf > 255) throw new Error("seccomp jump out of range");
    const o = i * 8;
    // struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; } in host order (LE on x64 and arm64).
    buf.writeUInt16LE(code, o);
    buf.writeUInt8(jt, o + 2);
    buf.writeUInt8(jf, o + 3);
    buf.writeUInt32LE(k >>> 0, o + 4);
  });
  return buf;
}
