/** verify, compare and gc on a stub project inside a temporary git repository. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, makeStubProject, takeRuns } from "./support/stub_project.ts";
import { run } from "./support/helpers.ts";

async function git(root: string, ...args: string[]) {
  const result = await run(root, [
    "eval",
    `const o = await new Deno.Command("git", { args: ${JSON.stringify(args)} }).output(); Deno.exit(o.code);`,
  ]);
  assert.equal(result.code, 0, `git ${args.join(" ")}: ${result.stderr}`);
}

async function repoWithTwoRuns(): Promise<string> {
  const root = await makeStubProject();
  await git(root, "init", "-q");
  await git(root, "config", "user.email", "test@example.com");
  await git(root, "config", "user.name", "test");
  await Deno.writeTextFile(join(root, ".gitignore"), "outputs/\nruns.log\n");
  assert.equal((await cli(root, ["run"])).code, 0);
  await git(root, "add", "-A");
  await git(root, "commit", "-qm", "baseline lr 0.0002");
  const params = JSON.parse(await Deno.readTextFile(join(root, "params.json")));
  params.train.lr = 0.001;
  await Deno.writeTextFile(join(root, "params.json"), JSON.stringify(params, null, 2));
  assert.equal((await cli(root, ["run"])).code, 0);
  await git(root, "commit", "-qam", "lr 0.001");
  await takeRuns(root);
  return root;
}

Deno.test("compare prints both metric sets with deltas, the differing params, and --json parses", async () => {
  const root = await repoWithTwoRuns();
  const table = await cli(root, ["compare", "HEAD~1", "HEAD"]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /train\.lr\s+0\.0002\s+0\.001/);
  assert.match(table.stdout, /score \(lower better\)\s+0\.2000 \*\s+1\.0000 \(\+0\.8000\)\s+floor 0\.1000 \(N 4\)/);
  assert.match(table.stdout, /quality \(higher better\)\s+0\.9998 \*\s+0\.9990 \(-8\.000e-4\)/);
  // x floor: each side's value / the floor (score's floor is 0.1; quality has none)
  assert.match(table.stdout, /floor 0\.1000 \(N 4\)\s+2\.00x \/ 10\.00x$/m);
  assert.match(table.stdout, /quality .*- \/ -$/m);
  const parsed = JSON.parse((await cli(root, ["compare", "HEAD~1", "HEAD", "--json"])).stdout);
  assert.deepEqual(parsed.sides, ["HEAD~1", "HEAD"]);
  assert.deepEqual(parsed.params["train.lr"], [0.0002, 0.001]);
  assert.equal(parsed.metrics.score.best, "HEAD~1");
  assert.ok(Math.abs(parsed.metrics.score.deltas[1] - 0.8) < 1e-12);
  assert.deepEqual(parsed.metrics.score.x_floor.map((x: number) => Number(x.toFixed(9))), [2, 10]);
  assert.deepEqual(parsed.metrics.quality.x_floor, [null, null]);
  // Default sides: the last commit that changed the lock vs the working tree (here equal to HEAD,
  // so the commit before it).
  const defaults = JSON.parse((await cli(root, ["compare", "--json"])).stdout);
  assert.equal(defaults.sides[1], "working tree");
  assert.deepEqual(defaults.params["train.lr"], [0.0002, 0.001]);
  const html = await Deno.readTextFile(join(root, "outputs", "compare.html"));
  assert.match(html, /compare: .* vs working tree/);
  const bad = await cli(root, ["compare", "nosuchrev", "HEAD"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /no pipeline\.lock\.json at revision 'nosuchrev'/);
});

Deno.test("verify --cache reports a flipped byte and the next run recomputes that entry", async () => {
  const root = await makeStubProject();
  await cli(root, ["run"]);
  await takeRuns(root);
  const lock = JSON.parse(await Deno.readTextFile(join(root, "pipeline.lock.json")));
  const file = join(root, "outputs", "cache", lock.stages.resize.key, "out", "resize.txt");
  const bytes = await Deno.readFile(file);
  bytes[3] ^= 0x01;
  await Deno.writeFile(file, bytes);
  const check = await cli(root, ["verify", "--cache"]);
  assert.equal(check.code, 1);
  assert.match(check.stdout, new RegExp(`CORRUPT  ${lock.stages.resize.key}  resize\\.txt changed`));
  assert.match(check.stdout, /7 cache entries re-hashed, 1 corrupt/);
  const status = await cli(root, ["status"]);
  assert.match(status.stdout, /resize\s+stale\s+\w+\s+cache entry damaged \(resize\.txt changed\)/);
  assert.equal((await cli(root, ["run"])).code, 0);
  assert.deepEqual(
    await takeRuns(root),
    ["resize"],
    "recomputed, and its output equals the lock's so nothing below re-runs",
  );
  assert.equal((await cli(root, ["verify", "--cache"])).code, 0);
});

Deno.test("verify recomputes each stage into a scratch cache and reports it reproducible", async () => {
  const root = await makeStubProject();
  await cli(root, ["run"]);
  await takeRuns(root);
  const before = [...Deno.readDirSync(join(root, "outputs", "cache"))].map((e) => e.name).sort();
  const verify = await cli(root, ["verify"]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  for (const stage of ["download", "crop", "resize", "shard", "train", "evaluate", "render"]) {
    assert.match(verify.stdout, new RegExp(`${stage}\\s+reproducible`));
  }
  const after = [...Deno.readDirSync(join(root, "outputs", "cache"))].map((e) => e.name).sort();
  assert.deepEqual(after, before, "the real cache is untouched");
  // A stage whose code makes different bytes each time is reported with the differing files.
  const cropFile = join(root, "stages", "crop.js");
  await Deno.writeTextFile(
    cropFile,
    (await Deno.readTextFile(cropFile)).replace("VARIANT = 1", "VARIANT = Math.random()"),
  );
  await cli(root, ["run"]);
  const differs = await cli(root, ["verify", "crop"]);
  assert.equal(differs.code, 1);
  assert.match(differs.stdout, /crop\s+DIFFERS\s+1 file\(s\): crop\.txt/);
});

Deno.test("gc --dry-run changes nothing; gc then frees exactly what it listed", async () => {
  const root = await repoWithTwoRuns();
  // An experiment never committed: its entries are referenced by no lock once params go back.
  await cli(root, ["run", "--set", "train.lr=0.5"]);
  await cli(root, ["run"]);
  const cache = join(root, "outputs", "cache");
  const listing = () =>
    [...Deno.readDirSync(cache)].map((e) => e.name).filter((n) => !n.startsWith(".statcache")).sort();
  const before = listing();
  const dry = await cli(root, ["gc", "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.deepEqual(listing(), before);
  const listed = [...dry.stdout.matchAll(/would remove\s+(\S+)/g)].map((m) => m[1]).sort();
  assert.equal(listed.length, 3, "the lr=0.5 train, evaluate and render entries");
  const gc = await cli(root, ["gc"]);
  assert.equal(gc.code, 0);
  const removed = [...gc.stdout.matchAll(/removing\s+(\S+)/g)].map((m) => m[1]).sort();
  assert.deepEqual(removed, listed);
  assert.deepEqual(listing(), before.filter((name) => !listed.includes(name)));
  // Both committed experiments are still restorable without running anything.
  await takeRuns(root);
  await cli(root, ["run", "--set", "train.lr=0.0002"]);
  assert.deepEqual(await takeRuns(root), []);
});
