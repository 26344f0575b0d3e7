import { dirname, join } from "node:path";

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** fsync a directory so that a rename or a new entry in it survives a power cut. */
export async function fsyncDir(path: string): Promise<void> {
  using dir = await Deno.open(path, { read: true });
  await dir.sync();
}

/** What marks a temporary file of writeFileAtomic (`NAME.tmp-PID-N`): left only by a killed process. */
export const TEMP_MARK = ".tmp-";

let tempCounter = 0;

/**
 * A temporary name for `path`, unique per call and not only per process: concurrent runs in one
 * process (experiments) may write the same file (the stat cache) at the same time.
 */
export function tempPath(path: string): string {
  return `${path}${TEMP_MARK}${Deno.pid}-${++tempCounter}`;
}

/**
 * Write a file so that its final name only ever holds complete content:
 * temp file beside it, fsync, rename, fsync the directory. A failed write (a full disk) removes
 * its temp file and leaves the previous content under the final name untouched.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const temp = tempPath(path);
  await Deno.mkdir(dirname(path), { recursive: true });
  try {
    using file = await Deno.open(temp, { write: true, create: true, truncate: true });
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  await Deno.rename(temp, path);
  await fsyncDir(dirname(path));
}

/** Remove the temp files killed writers left below `root` (their names hold TEMP_MARK). */
export async function removeTempFiles(root: string): Promise<void> {
  for (const file of await listFiles(root).catch(() => [])) {
    if (file.split("/").pop()!.includes(TEMP_MARK)) await removeIfExists(join(root, file));
  }
}

/** Bytes as B, KiB, MiB or GiB with one decimal. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** Total size of the files below `dir` (0 when it does not exist). */
export async function treeBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const file of await listFiles(dir).catch(() => [])) bytes += (await Deno.stat(join(dir, file))).size;
  return bytes;
}

/**
 * Every regular file below `root`, as sorted '/'-separated paths relative to it; anything else
 * (a symlink, not followed; a FIFO) goes into `others` when given.
 */
export async function listFiles(root: string, others?: string[]): Promise<string[]> {
  const found: string[] = [];
  async function walk(relative: string) {
    for await (const entry of Deno.readDir(join(root, relative))) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory) await walk(child);
      else if (entry.isFile) found.push(child);
      else others?.push(child);
    }
  }
  await walk("");
  return found.sort();
}

/** fsync every file and directory below `root` (before it is renamed into the cache). */
export async function fsyncTree(root: string): Promise<void> {
  for (const file of await listFiles(root)) {
    using handle = await Deno.open(join(root, file), { read: true });
    await handle.sync();
  }
  const dirs = new Set<string>([root]);
  for (const file of await listFiles(root)) {
    let dir = dirname(join(root, file));
    while (dir.startsWith(root) && !dirs.has(dir)) {
      dirs.add(dir);
      dir = dirname(dir);
    }
  }
  for (const dir of dirs) await fsyncDir(dir);
}

export async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
