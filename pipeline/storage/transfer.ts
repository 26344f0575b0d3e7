/**
 * Moving cache entries to and from a remote cache (remote.ts), for the `push` and `pull` commands
 * and for the pull a run makes when a stage's key is on the remote only. A push sends only an entry that re-hashes
 * clean, every file before the entry that names them; a pull downloads under the key's claim into
 * its partial dir, checks every byte, and promotes only a complete entry.
 */
import { join } from "node:path";
import type { Cache, Manifest } from "./cache.ts";
import type { LeaseHolder } from "./lease.ts";
import { type RemoteCache, RemoteError } from "./remote.ts";

/** Uploads or downloads at once. */
const PARALLEL = 8;

export interface PullHooks {
  /** who claims the key (written into the claim) */
  command: string;
  /** another process holds the key's claim: told once, with the holder */
  waiting(holder: LeaseHolder): void;
  /** a dead holder's claim was taken over, and why it was judged dead */
  tookOver(why: string): void;
  signal?: AbortSignal;
}

/**
 * Bring `key` from the remote into the cache. Returns the manifest, and `reused` when, by the
 * time the claim was ours, another process had already made the entry.
 */
export async function pullEntry(
  cache: Cache,
  remote: RemoteCache,
  key: string,
  label: string,
  hooks: PullHooks,
): Promise<{ manifest: Manifest; reused: boolean }> {
  const { lease, tookOver } = await cache.claim(key, hooks.command, hooks.waiting, hooks.signal);
  try {
    if (tookOver) hooks.tookOver(tookOver);
    const { manifest } = await cache.check(key);
    if (manifest) return { manifest, reused: true };
    const entry = await remote.entry(key);
    if (!entry) throw new RemoteError(`${label}: ${remote.url}/ac/${key} is no longer on the remote`);
    const fetched = await cache.adopt(key, entry.manifest, entry.run, async (file, temp) => {
      lease.lost.throwIfAborted();
      await remote.fetchBlob(file.sha256, file.size, temp, `${label}: ${file.path}`);
    });
    return { manifest: fetched, reused: false };
  } finally {
    await lease.release();
  }
}

/**
 * Send `key`'s entry: every file the remote lacks, then the entry. The caller has re-hashed it
 * (`Cache.check` with rehash). Returns the bytes sent.
 */
export async function pushEntry(cache: Cache, remote: RemoteCache, key: string, manifest: Manifest): Promise<number> {
  let sent = 0;
  await inParallel(manifest.files, async (file) => {
    if (await remote.hasBlob(file.sha256)) return;
    await remote.putBlob(file.sha256, join(cache.outDir(key), file.path), file.size);
    sent += file.size;
  });
  await remote.putEntry(key, manifest, await cache.runInfo(key));
  return sent;
}

async function inParallel<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}
