/** The `push` and `pull` commands: a remote cache's entries for the named stages, sent or fetched (transfer.ts). */
import { stageByName } from "../core/dag.ts";
import { envName } from "../core/env.ts";
import { UserError } from "../core/errors.ts";
import type { Manifest } from "../storage/cache.ts";
import type { Decision } from "../core/plan.ts";
import type { RemoteCache } from "../storage/remote.ts";
import { pullEntry, type PullHooks, pushEntry } from "../storage/transfer.ts";
import type { Workspace } from "../storage/workspace.ts";
import { eventLine } from "../ui/words.ts";

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
      `no remote cache: set ${envName("REMOTE")}=http://HOST:PORT/PREFIX (and ${envName("REMOTE_TOKEN")} or ${
        envName("REMOTE_BASIC")
      })`,
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
