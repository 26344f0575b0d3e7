/**
 * A file's size, mtime, ctime and inode for the no-op check over a large folder
 * (storage/external.ts), written into a Float64Array. Deno.statSync builds a FileInfo with four
 * Date objects per call (~4.6 us a file here: most of a check over 202,599 photos); glibc's statx(2)
 * through FFI fills one reused buffer instead. Where libc's statx cannot be loaded (not Linux with
 * glibc 2.28+, or no FFI permission), Deno.statSync does it. The numbers are the same either way:
 * mtime in whole milliseconds and ctime in whole seconds, as Deno's FileInfo has them (tests/storage_test.ts
 * compares).
 */

const AT_FDCWD = -100;
/** STATX_BASIC_STATS: every field of stat(2) */
const STATX_BASIC_STATS = 0x7ff;
// Offsets in struct statx (the same on every Linux architecture).
const STX_INO = 32;
const STX_SIZE = 40;
const STX_CTIME = 96;
const STX_MTIME = 112;

type Statx = (path: Uint8Array, into: Float64Array, offset: number) => boolean;

let statx: Statx | null | undefined;

function loadStatx(): Statx | null {
  if (Deno.build.os !== "linux") return null;
  let library;
  try {
    library = Deno.dlopen("libc.so.6", {
      statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
    });
  } catch {
    return null; // musl, no FFI permission, or a glibc older than 2.28
  }
  const buffer = new Uint8Array(256);
  // 32-bit words of the buffer: a 64-bit field at byte b is words b/4 (low) and b/4 + 1 (high).
  const u32 = new Uint32Array(buffer.buffer);
  const i32 = new Int32Array(buffer.buffer);
  const u64 = (at: number) => u32[at / 4] + u32[at / 4 + 1] * 2 ** 32;
  const seconds = (at: number) => u32[at / 4] + i32[at / 4 + 1] * 2 ** 32;
  return (path, into, offset) => {
    if (library.symbols.statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, buffer) !== 0) return false;
    into[offset] = u64(STX_SIZE);
    into[offset + 1] = seconds(STX_MTIME) * 1000 + Math.floor(u32[STX_MTIME / 4 + 2] / 1e6);
    into[offset + 2] = seconds(STX_CTIME) * 1000; // Deno's FileInfo.ctime has whole seconds
    into[offset + 3] = u64(STX_INO);
    return true;
  };
}

const encoder = new TextEncoder();
let pathBuffer = new Uint8Array(4096);

/** Stat `path` (following symlinks) into `into[offset .. offset + 4]`; throws Deno.statSync's error. */
export function statInto(path: string, into: Float64Array, offset: number): void {
  if (statx === undefined) statx = loadStatx();
  if (statx) {
    if (pathBuffer.length < path.length * 3 + 1) pathBuffer = new Uint8Array(path.length * 3 + 1);
    const { written } = encoder.encodeInto(path, pathBuffer);
    pathBuffer[written] = 0; // a C string
    if (statx(pathBuffer, into, offset)) return;
  }
  // No statx, or it failed: Deno's stat gives the values, or the error a caller expects.
  const info = Deno.statSync(path);
  into[offset] = info.size;
  into[offset + 1] = info.mtime?.getTime() ?? 0;
  into[offset + 2] = info.ctime?.getTime() ?? 0;
  into[offset + 3] = info.ino ?? 0;
}
