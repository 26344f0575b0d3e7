/** The `push` and `pull` commands: a remote cache's entries for the named stages, sent or fetched (transfer.ts). */
import { stageByName } from "../core/dag.ts";
import { envName } from "../core/env.ts";
import { UserError } from "../core/errors.ts";
import type { Manifest } from "../storage/cache.ts";
import type { Decision } from "../core/plan.ts";
import type { RemoteCache } from "../storage/remote.ts";
import { pullEntry, type PullHooks, pushEntry } from "../storage/transfer.ts";
import type { Workspace } from "../storage/workspace.ts";
import { eventLine, notOnRemoteLine, pulledLine, pushedLine, pushSkippedLine, shortHash } from "../ui/words.ts";

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
      log(pushSkippedLine(decision.stage, null));
      continue;
    }
    const { manifest, problems } = await workspace.cache.check(key, true);
    if (manifest) ready.push({ stage: decision.stage, key, manifest });
    else if (problems.join() === "not in cache") {
      log(pushSkippedLine(decision.stage, key));
    } else damaged.push(`${decision.stage} (${shortHash(key)}: ${problems.join(", ")})`);
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
      log(pushedLine(stage, key, manifest.files.length, null));
      continue;
    }
    const sent = await pushEntry(workspace.cache, remote, key, manifest);
    log(pushedLine(stage, key, manifest.files.length, sent));
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
      log(pulledLine(stage, key, manifest.files.length, reused));
    } else if (decision.action === "run") {
      log(notOnRemoteLine(stage, decision.key));
    } else {
      log(notOnRemoteLine(stage, null));
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
