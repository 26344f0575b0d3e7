import { basename } from "node:path";
import { envName } from "../core/env.ts";
import { UserError } from "../core/errors.ts";
import { git, showAt } from "../core/git.ts";
import { formatBytes, removeIfExists, treeBytes } from "../storage/fsutil.ts";
import { Interrupts } from "../core/interrupts.ts";
import { acquireRunLock } from "../storage/runlock.ts";
import { type LockFile, lockProblem } from "../core/lock.ts";
import type { Workspace } from "../storage/workspace.ts";
import { experimentKeys } from "../experiments/records.ts";
import { orphanedScratches } from "./verify.ts";

/**
 * Cache entries (and partial dirs of killed runs) that neither the working tree's lock, nor the
 * lock of any of the last `keepCommits` commits, nor an experiment record (experiments/) refers
 * to, and the scratch caches killed verify runs left. `--dry-run` only lists them.
 */
export async function gcCommand(
  workspace: Workspace,
  dryRun: boolean,
  keepCommits: number,
  log: (line: string) => void,
): Promise<number> {
  const shared = envName("CACHE");
  if (Deno.env.get(shared)) {
    throw new UserError(
      `gc knows only this clone's locks, so in a cache shared through ${shared} it would remove ` +
        `entries other clones use; unset ${shared} to collect this clone's own outputs/cache`,
    );
  }
  const runLock = dryRun ? null : await acquireRunLock(workspace.outputsDir, "gc", log);
  // Ctrl-C stops a real gc between entries (--dry-run writes nothing: it just ends).
  using interrupts = runLock && new Interrupts(() => runLock.releaseSync());
  try {
    if (!dryRun) await workspace.cache.sweepTrash(); // what an interrupted gc or run left
    const referenced = await referencedKeys(workspace, keepCommits);
    const candidates = await unreferencedEntries(workspace, referenced);
    let total = 0;
    for (const [done, entry] of candidates.entries()) {
      if (interrupts?.signal.aborted) {
        log(
          `interrupted: gc stopped after ${done} of ${candidates.length} entries (each removed whole or not at all); ` +
            "run it again to finish",
        );
        return interrupts.exitCode;
      }
      total += entry.bytes;
      console.log(`${dryRun ? "would remove" : "removing"}  ${basename(entry.path)}  ${formatBytes(entry.bytes)}`);
      if (!dryRun) await entry.remove();
    }
    const verb = dryRun ? "would free" : "freed";
    console.log(
      `${candidates.length} entries, ${verb} ${formatBytes(total)}; kept ${referenced.size} keys referenced by the ` +
        `working tree, the last ${keepCommits} commits and the experiments`,
    );
    return 0;
  } finally {
    await runLock?.release();
  }
}

async function referencedKeys(workspace: Workspace, keepCommits: number): Promise<Set<string>> {
  const locks: (LockFile | null)[] = [await workspace.readLock()];
  const revs = (await git(workspace.root, ["rev-list", "-n", String(keepCommits), "HEAD"]))?.trim().split("\n")
    .filter(Boolean) ?? [];
  for (const rev of revs) {
    const text = await showAt(workspace.root, rev, "pipeline.lock.json");
    try {
      const lock = text ? JSON.parse(text) : null;
      if (!lockProblem(lock)) locks.push(lock);
    } catch { /* a damaged lock in history protects nothing */ }
  }
  const keys = await experimentKeys(workspace.root);
  for (const lock of locks) for (const stage of Object.values(lock?.stages ?? {})) keys.add(stage.key);
  return keys;
}

/** What gc removes: unreferenced cache entries and the scratch caches of killed verify runs. */
async function unreferencedEntries(workspace: Workspace, referenced: Set<string>) {
  const entries: { path: string; bytes: number; remove: () => Promise<void> }[] = [];
  for (const entry of await workspace.cache.entries()) {
    if (referenced.has(entry.key)) continue;
    // A partial dir whose key is claimed is being filled right now (a pull, a run).
    if (entry.partial && await workspace.cache.claimHolder(entry.key)) continue;
    const remove = () => workspace.cache.discard(entry.path);
    entries.push({ path: entry.path, bytes: await treeBytes(entry.path), remove });
  }
  for (const path of await orphanedScratches(workspace.outputsDir)) {
    entries.push({ path, bytes: await treeBytes(path), remove: () => removeIfExists(path) });
  }
  return entries;
}

/** `gc --keep-commits N`: a whole number (default 20); anything else would keep the wrong commits' entries. */
export function keepCommits(text = "20"): number {
  if (!/^\d+$/.test(text)) {
    throw new UserError(
      `--keep-commits ${text}: expected a whole number >= 0 (how many recent commits' locks keep their entries), ` +
        "e.g. --keep-commits 20",
    );
  }
  return Number(text);
}
