import { test } from "node:test";
import assert from "node:assert/strict";
import { ARCHES, DENIED_SYSCALLS, seccompProgram } from "../../../core/policy/seccomp.js";

/** A tiny classic-BPF interpreter for the opcodes the filter uses. */
function evaluate(prog: Buffer, arch: number, nr: number): number {
  let a = 0;
  for (let pc = 0; pc < prog.length / 8; pc++) {
    const o = pc * 8;
    const code = prog.readUInt16LE(o),
      jt = prog[o + 2]!,
      jf = prog[o + 3]!,
      k = prog.readUInt32LE(o + 4);
    if (code === 0x20) a = k === 4 ? arch : k === 0 ? nr : NaN;
    else if (code === 0x15) pc += a === k ? jt : jf;
    else if (code === 0x35) pc += a >= k ? jt : jf;
    else if (code === 0x06) return k;
    else throw new Error(`opcode ${code}`);
  }
  throw new Error("fell off the end");
}

test("the filter denies each listed call with EPERM, allows others, and kills foreign ABIs", () => {
  for (const [name, a] of Object.entries(ARCHES)) {
    const p = seccompProgram(name)!;
    for (const s of DENIED_SYSCALLS) assert.equal(evaluate(p, a.audit, a.nr[s]), 0x00050001, `${name} ${s}`);
    for (const allowed of [0, 1, 2, 3, 59, 60, 231])
      if (!Object.values(a.nr).includes(allowed)) assert.equal(evaluate(p, a.audit, allowed), 0x7fff0000);
    assert.equal(evaluate(p, 0x40000003, 1), 0x80000000, "i386 via int 0x80 is killed");
    if (a.foreignFrom > 0) assert.equal(evaluate(p, a.audit, a.foreignFrom | a.nr.unshare), 0x80000000, "x32 numbers are killed");
  }
  assert.equal(seccompProgram("mips"), null);
});
