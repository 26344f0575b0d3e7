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

/**
 * Write a file so that its final name only ever holds complete content:
 * temp file beside it, fsync, rename, fsync the directory.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const temp = `${path}.tmp-${Deno.pid}`;
  await Deno.mkdir(dirname(path), { recursive: true });
  {
    using file = await Deno.open(temp, { write: true, create: true, truncate: true });
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  }
  await Deno.rename(temp, path);
  await fsyncDir(dirname(path));
}

/** Every regular file below `root`, as sorted '/'-separated paths relative to it. */
export async function listFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(relative: string) {
    for await (const entry of Deno.readDir(join(root, relative))) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory) await walk(child);
      else if (entry.isFile) found.push(child);
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
