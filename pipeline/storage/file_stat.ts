/**
 * Files' size, mtime, ctime and inode for the no-op check over a large folder
 * (storage/external.ts), written into a Float64Array. Deno.statSync builds a FileInfo with four
 * Date objects per call (~4.6 us a file here); glibc's statx(2) through FFI fills one reused buffer
 * instead, relative to the folder's open descriptor so the kernel does not walk the folder's own
 * path again for every file. What is left is the system call itself (~2.8 us a file on this VM,
 * almost all of it in the kernel), so a large folder is stat'ed on every core at once, as git's
 * preload-index does: worker threads claim chunks of files beside the calling thread
 * (storage/stat_worker.ts). Where libc's statx cannot be loaded (not Linux with glibc 2.28+, or no
 * FFI permission), Deno.statSync does it on one thread. The numbers are the same either way: mtime
 * in whole milliseconds and ctime in whole seconds, as Deno's FileInfo has them
 * (tests/storage_test.ts compares).
 */

const AT_FDCWD = -100;
const O_RDONLY_DIRECTORY = 0o200000;
/** STATX_BASIC_STATS: every field of stat(2) */
const STATX_BASIC_STATS = 0x7ff;
// Offsets in struct statx (the same on every Linux architecture).
const STX_INO = 32;
const STX_SIZE = 40;
const STX_CTIME = 96;
const STX_MTIME = 112;

/** Below this many files a worker's start (~50 ms) costs more than it saves. */
export const PARALLEL_FROM = 20_000;
/** Files a thread claims at a time. */
const CHUNK = 2048;

export interface Statx {
  /** stat `path` (a C string: relative to `dir`, or absolute) into `into[offset .. offset + 4]`; false if it failed */
  stat(dir: number, path: Uint8Array, into: Float64Array, offset: number): boolean;
  /** an open descriptor of the folder at `path`, or -1 */
  openFolder(path: string): number;
  closeFolder(fd: number): void;
}

let loaded: Statx | null | undefined;

/** glibc's statx, or null where it cannot be loaded; once per thread. */
export function loadStatx(): Statx | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (Deno.build.os !== "linux") return null;
  let library;
  try {
    library = Deno.dlopen("libc.so.6", {
      statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
      open: { parameters: ["buffer", "i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
    });
  } catch {
    return null; // musl, no FFI permission, or a glibc older than 2.28
  }
  const { symbols } = library;
  const buffer = new Uint8Array(256);
  // 32-bit words of the buffer: a 64-bit field at byte b is words b/4 (low) and b/4 + 1 (high).
  const u32 = new Uint32Array(buffer.buffer);
  const i32 = new Int32Array(buffer.buffer);
  const u64 = (at: number) => u32[at / 4] + u32[at / 4 + 1] * 2 ** 32;
  const seconds = (at: number) => u32[at / 4] + i32[at / 4 + 1] * 2 ** 32;
  loaded = {
    stat(dir, path, into, offset) {
      if (symbols.statx(dir, path, 0, STATX_BASIC_STATS, buffer) !== 0) return false;
      into[offset] = u64(STX_SIZE);
      into[offset + 1] = seconds(STX_MTIME) * 1000 + Math.floor(u32[STX_MTIME / 4 + 2] / 1e6);
      into[offset + 2] = seconds(STX_CTIME) * 1000; // Deno's FileInfo.ctime has whole seconds
      into[offset + 3] = u64(STX_INO);
      return true;
    },
    openFolder: (path) => symbols.open(cString(path), O_RDONLY_DIRECTORY),
    closeFolder: (fd) => void symbols.close(fd),
  };
  return loaded;
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array {
  return encoder.encode(`${text}\0`);
}

/** Stat `path` (following symlinks) into `into[offset .. offset + 4]`; throws Deno.statSync's error. */
export function statInto(path: string, into: Float64Array, offset: number): void {
  if (loadStatx()?.stat(AT_FDCWD, cString(path), into, offset)) return;
  // No statx, or it failed: Deno's stat gives the values, or the error a caller expects.
  const info = Deno.statSync(path);
  into[offset] = info.size;
  into[offset + 1] = info.mtime?.getTime() ?? 0;
  into[offset + 2] = info.ctime?.getTime() ?? 0;
  into[offset + 3] = info.ino ?? 0;
}

/**
 * The files' names as C strings in one shared buffer, the stats they go to, and a counter of the
 * next file to claim: what the calling thread and each worker share.
 */
export interface StatShare {
  folder: string;
  names: Uint8Array;
  /** byte offset of each name in `names`, and one past the last */
  starts: Uint32Array;
  /** four numbers a file; a size still NaN at the end: not stat'ed here (gone since the walk, or a thread failed) */
  into: Float64Array;
  /** [0]: the next file to claim */
  next: Int32Array;
}

/** Claim chunks of files until none is left (none, where statx or the folder cannot be opened here). */
export function statChunks(share: StatShare): void {
  const statx = loadStatx();
  const fd = statx ? statx.openFolder(share.folder) : -1;
  if (!statx || fd < 0) return;
  const count = share.starts.length - 1;
  for (;;) {
    const from = Atomics.add(share.next, 0, CHUNK);
    if (from >= count) break;
    for (let i = from; i < Math.min(count, from + CHUNK); i++) {
      statx.stat(fd, share.names.subarray(share.starts[i], share.starts[i + 1]), share.into, i * 4);
    }
  }
  statx.closeFolder(fd);
}

/**
 * Stat every file of `folder` (`names` relative to it, '/'-separated) into a new array of four
 * numbers a file, on every core for a large folder. Throws Deno.statSync's error for a file that
 * cannot be stat'ed.
 */
export async function statFolderFiles(folder: string, names: string[]): Promise<Float64Array> {
  const count = names.length;
  const bytes = encoder.encode(names.join("\0") + "\0");
  const share: StatShare = {
    folder,
    names: new Uint8Array(new SharedArrayBuffer(bytes.length)),
    starts: new Uint32Array(new SharedArrayBuffer((count + 1) * 4)),
    into: new Float64Array(new SharedArrayBuffer(count * 32)),
    next: new Int32Array(new SharedArrayBuffer(4)),
  };
  share.names.set(bytes);
  for (let i = 0, at = 0; i < count; i++) {
    at = bytes.indexOf(0, at) + 1;
    share.starts[i + 1] = at;
    share.into[i * 4] = NaN;
  }
  const helpers = count >= PARALLEL_FROM && loadStatx() ? Math.min(7, (navigator.hardwareConcurrency || 1) - 1) : 0;
  const workers = Array.from({ length: helpers }, () => {
    const worker = new Worker(new URL("./stat_worker.ts", import.meta.url).href, { type: "module" });
    const finished = new Promise<void>((resolve) => {
      worker.onmessage = () => resolve();
      // A worker that could not run leaves its claimed files at NaN; they are stat'ed below.
      worker.onerror = (event) => {
        event.preventDefault();
        resolve();
      };
    });
    worker.postMessage(share);
    return { worker, finished };
  });
  statChunks(share);
  await Promise.all(workers.map(({ finished }) => finished));
  for (const { worker } of workers) worker.terminate();
  for (let i = 0; i < count; i++) {
    if (Number.isNaN(share.into[i * 4])) statInto(`${folder}/${names[i]}`, share.into, i * 4);
  }
  return share.into;
}
