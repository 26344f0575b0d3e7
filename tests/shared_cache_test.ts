/**
 * One cache shared by two "hosts" (two processes with different STUB_HOST_ID (the stub project's prefix for the engine's variables), each with its
 * own copy of the stub project, STUB_CACHE pointing both at one folder): a key is built once,
 * a live holder's heartbeat keeps its claim, a SIGKILLed holder's claim and run lock are taken
 * over once their leases expire, not before.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, cliArgs, makeStubProject, takeRuns } from "./support/stub_project.ts";
import { exists, readLock, scratchDir, waitFor } from "./support/helpers.ts";

const ALL = ["download", "crop", "resize", "shard", "train", "evaluate", "render"];

function host(id: string, cache: string, lease: number, extra: Record<string, string> = {}) {
  return { STUB_HOST_ID: id, STUB_CACHE: cache, STUB_LEASE_S: String(lease), ...extra };
}

function spawn(root: string, args: string[], env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: cliArgs(root, args),
    cwd: root,
    env,
    stdout: "null",
    stderr: "piped",
  })
    .spawn();
}

async function stderrOf(child: Deno.ChildProcess): Promise<{ code: number; stderr: string }> {
  const { code, stderr } = await child.output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

/** The key whose partial dir holds `file` (the stage is inside its run), or null. */
async function partialWith(cache: string, file: string): Promise<string | null> {
  for (const entry of Deno.readDirSync(cache)) {
    if (entry.name.startsWith(".partial-") && await exists(join(cache, entry.name, "out", file))) {
      return entry.name.slice(".partial-".length);
    }
  }
  return null;
}

Deno.test("two hosts sharing a cache build each key once; the waiting one reuses it, the holder's heartbeat keeps its claim", async () => {
  const cache = await scratchDir({ prefix: "facegan-shared-" });
  const [a, b] = [await makeStubProject(), await makeStubProject()];
  // train takes 5 s, more than twice the 2 s lease: only renewals keep the claim alive.
  const slow = { STUB_SLEEP_MS_train: "5000" };
  const first = spawn(a, ["run"], host("a", cache, 2, slow));
  const second = spawn(b, ["run"], host("b", cache, 2, slow));
  const [resultA, resultB] = [await stderrOf(first), await stderrOf(second)];
  assert.equal(resultA.code, 0, resultA.stderr);
  assert.equal(resultB.code, 0, resultB.stderr);
  const built = [...await takeRuns(a), ...await takeRuns(b)];
  assert.deepEqual(built.sort(), [...ALL].sort(), "every stage built exactly once across both hosts");
  const both = resultA.stderr + resultB.stderr;
  assert.match(both, /waiting: pid \d+ on host [ab] .* holds the claim on/);
  assert.match(both, /cached .* \(made meanwhile by another process\)/);
  assert.doesNotMatch(both, /taking over/);
  const [lockA, lockB] = [await readLock(a), await readLock(b)];
  for (const stage of ALL) assert.equal(lockA.stages[stage].output, lockB.stages[stage].output, stage);
  assert.equal(await exists(join(a, "outputs", "cache")), false, "nothing in the projects' own outputs/cache");
  // A third run on either host finds everything, each file verified against its manifest.
  const again = await cli(b, ["run"], host("b", cache, 2));
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await takeRuns(b), []);
});

Deno.test("a holder SIGKILLed on another host: its claim is taken over once its lease expires, and its partial work resumed", async () => {
  const cache = await scratchDir({ prefix: "facegan-shared-" });
  const [a, b] = [await makeStubProject(), await makeStubProject()];
  const lease = 3;
  const holder = spawn(a, ["run"], host("a", cache, lease, { STUB_SLEEP_MS_train: "60000" }));
  let key: string | null = null;
  await waitFor(async () => (key = await partialWith(cache, "train.txt")) !== null, 30_000, "train to start on host a");
  holder.kill("SIGKILL");
  await holder.status;
  const killedAt = Date.now();
  const taker = await cli(b, ["run"], host("b", cache, lease));
  const waited = (Date.now() - killedAt) / 1000;
  assert.equal(taker.code, 0, taker.stderr);
  // Host b cannot see host a's pids (a different host id): only the expired lease frees the claim.
  assert.match(
    taker.stderr,
    new RegExp(`train\\s+waiting: pid \\d+ on host a .* holds the claim on ${key!.slice(0, 12)}`),
  );
  assert.match(
    taker.stderr,
    /train\s+taking over the claim on \w+: its holder \(pid \d+ on host a\) let its lease expire at/,
  );
  assert.doesNotMatch(taker.stderr, /no longer running/);
  assert.match(taker.stderr, /train\s+running .*\[resuming\]/);
  assert.ok(waited > 1, `waited for the lease (${waited} s after the kill)`);
  assert.deepEqual(await takeRuns(b), ["train", "evaluate", "render"]);
});

Deno.test("a run lock held by a SIGKILLed run on another host: busy until its lease expires, then taken over", async () => {
  // One project whose outputs/ two hosts share (a project on a shared filesystem).
  const cache = await scratchDir({ prefix: "facegan-shared-" });
  const root = await makeStubProject();
  const lease = 10;
  const holder = spawn(root, ["run"], host("a", cache, lease, { STUB_SLEEP_MS_train: "60000" }));
  await waitFor(async () => await partialWith(cache, "train.txt") !== null, 30_000, "train to start on host a");
  holder.kill("SIGKILL");
  await holder.status;
  const busy = await cli(root, ["run"], host("b", cache, lease));
  assert.equal(busy.code, 3, busy.stderr);
  assert.match(
    busy.stderr,
    /^busy: another run \(pid \d+ on host a, .* its lease expires at \S+ and the next run takes over\)/m,
  );
  let taken = busy;
  await waitFor(
    async () => {
      taken = await cli(root, ["run"], host("b", cache, lease));
      return taken.code !== 3;
    },
    30_000,
    "the run lock's lease to expire",
  );
  assert.equal(taken.code, 0, taken.stderr);
  assert.match(taken.stderr, /taking over .*run\.lock: its holder \(pid \d+ on host a\) let its lease expire at/);
});
