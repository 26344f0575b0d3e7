/**
 * Moving cache entries to and from a remote cache (remote.ts): `push` and `pull`, and the pull a
 * run makes when a stage's key is on the remote only. A push sends only an entry that re-hashes
 * clean, every file before the entry that names them; a pull downloads under the key's claim into
 * its partial dir, checks every byte, and promotes only a complete entry.
 */
import { join } from "node:path";
import { stageByName } from "./dag.ts";
import { UserError } from "./errors.ts";
import type { Cache, Manifest } from "./cache.ts";
import type { LeaseHolder } from "./lease.ts";
import type { Decision } from "./plan.ts";
import { type RemoteCache, RemoteError } from "./remote.ts";
import type { Workspace } from "./workspace.ts";
import { eventLine } from "./words.ts";

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
async function pushEntry(cache: Cache, remote: RemoteCache, key: string, manifest: Manifest): Promise<number> {
  let sent = 0;
  await inParallel(manifest.files, async (file) => {
    if (await remote.hasBlob(file.sha256)) return;
    await remote.putBlob(file.sha256, join(cache.outDir(key), file.path), file.size);
    sent += file.size;
  });
  await remote.putEntry(key, manifest, await cache.runInfo(key));
  return sent;
}

/** `push [STAGE...]`: send the named stages' entries (default: every stage the plan knows a key for). */
export async function pushCommand(workspace: Workspace, names: string[], log: (line: string) => void) {
  const remote = requireRemote(workspace);
  const decisions = await selected(workspace, names);
  // Re-hash every entry first: a damaged one stops the push before anything is sent.
  const ready: { stage: string; key: string; manifest: Manifest }[] = [];
  const damaged: string[] = [];
  for (const decision of decisions) {
    const key = "record" in decision ? decision.record.key : decision.action === "run" ? decision.key : null;
    if (!key) {
      log(`• ${decision.stage.padEnd(9)} skipped: its inputs are not in the local cache`);
      continue;
    }
    const { manifest, problems } = await workspace.cache.check(key, true);
    if (manifest) ready.push({ stage: decision.stage, key, manifest });
    else if (problems.join() === "not in cache") {
      log(`• ${decision.stage.padEnd(9)} skipped: ${key.slice(0, 12)} is not in the local cache`);
    } else damaged.push(`${decision.stage} (${key.slice(0, 12)}: ${problems.join(", ")})`);
  }
  await workspace.statCache.save();
  if (!ready.length && !damaged.length) {
    log(
      `nothing pushed: no ${names.length ? "named " : ""}stage's entry is in the local cache; ` +
        "run `deno task pipeline` first, then push",
    );
    return 0;
  }
  if (damaged.length) {
    throw new UserError(
      `push refused, nothing sent: damaged local cache entries ${damaged.join("; ")}; ` +
        `run \`deno task pipeline\` to recompute them, then push`,
    );
  }
  for (const { stage, key, manifest } of ready) {
    const there = await remote.entry(key).catch(() => null);
    if (there?.manifest.output === manifest.output) {
      log(`✓ ${stage.padEnd(9)} already on the remote  ${key.slice(0, 12)}`);
      continue;
    }
    const sent = await pushEntry(workspace.cache, remote, key, manifest);
    log(`⇡ ${stage.padEnd(9)} pushed ${key.slice(0, 12)}  (${manifest.files.length} files, ${sent} bytes sent)`);
  }
  log(`${ready.length} entries on ${remote.url}`);
  return 0;
}

/** `pull [STAGE...]`: fetch the named stages' entries (default: every stage) the remote has and this cache lacks. */
export async function pullCommand(workspace: Workspace, names: string[], log: (line: string) => void) {
  const remote = requireRemote(workspace);
  let pulled = 0;
  for (const decision of await selected(workspace, names)) {
    const { stage } = decision;
    const name = stage.padEnd(9);
    if (decision.action === "cached") {
      log(eventLine({ kind: "cached", stage, key: decision.record.key }));
    } else if (decision.action === "pull") {
      const { key } = decision.record;
      const hooks: PullHooks = {
        command: `pull ${stage} in ${workspace.root}`,
        waiting: (holder) => log(eventLine({ kind: "waiting", stage, key, holder })),
        tookOver: (why) => log(eventLine({ kind: "took-over", stage, key, why })),
      };
      const { manifest, reused } = await pullEntry(workspace.cache, remote, key, stage, hooks);
      workspace.forget(key);
      pulled++;
      log(
        `⇣ ${name} ${reused ? "made meanwhile by another process" : "pulled"} ${
          key.slice(0, 12)
        }  (${manifest.files.length} files)`,
      );
    } else if (decision.action === "run") {
      log(`• ${name} not on the remote: ${decision.key.slice(0, 12)} (run the pipeline to make it)`);
    } else {
      log(`• ${name} not on the remote: its inputs are not made yet`);
    }
  }
  await workspace.statCache.save();
  log(`${pulled} entries pulled from ${remote.url}`);
  return 0;
}

function requireRemote(workspace: Workspace): RemoteCache {
  if (!workspace.remote) {
    throw new UserError(
      "no remote cache: set FACEGAN_REMOTE=http://HOST:PORT/PREFIX (and FACEGAN_REMOTE_TOKEN or FACEGAN_REMOTE_BASIC)",
    );
  }
  workspace.remote.strict = true;
  return workspace.remote;
}

/** The plan's decisions for the named stages (all when none are named), in DAG order. */
async function selected(workspace: Workspace, names: string[]): Promise<Decision[]> {
  for (const name of names) stageByName(workspace.dag, name);
  const plan = await workspace.plan({
    facts: await workspace.facts(),
    lock: await workspace.readLock(),
    selection: {},
  });
  return plan.decisions.filter((decision) => !names.length || names.includes(decision.stage));
}

async function inParallel<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}
