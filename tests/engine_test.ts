/** The pipeline engine on a stub project: caching, invalidation, crash safety, locking, errors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, makeStubProject, takeRuns } from "./support/stub_project.ts";
import { exists, partialDirs, waitFor } from "./support/helpers.ts";
import { isRacy } from "../pipeline/storage/statcache.ts";

const ALL = ["download", "crop", "resize", "shard", "train", "evaluate", "render"];

Deno.test("a second run with nothing changed runs no stage and reports every stage cached", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  assert.deepEqual(await takeRuns(root), ALL);
  const second = await cli(root, ["run"]);
  assert.equal(second.code, 0);
  assert.deepEqual(await takeRuns(root), []);
  for (const stage of ALL) assert.match(second.stderr, new RegExp(`✓ ${stage}\\s+cached`));
});

Deno.test("changing train.lr re-runs exactly train, evaluate, render; status says why first", async () => {
  const root = await makeStubProject();
  await cli(root, ["run"]);
  await takeRuns(root);
  const status = await cli(root, ["status", "--set", "train.lr=0.001"]);
  assert.equal(status.code, 0);
  assert.match(status.stdout, /train\s+stale\s+\w+\s+param train\.lr: 0\.0002 -> 0\.001/);
  assert.match(status.stdout, /crop\s+fresh/);
  assert.match(status.stdout, /evaluate\s+stale.*param train\.lr/);
  assert.equal((await cli(root, ["run", "--set", "train.lr=0.001"])).code, 0);
  assert.deepEqual(await takeRuns(root), ["train", "evaluate", "render"]);
});

Deno.test("editing a crop-stage file re-runs crop and everything below it", async () => {
  const root = await makeStubProject();
  await cli(root, ["run"]);
  await takeRuns(root);
  const cropFile = join(root, "stages", "crop.js");
  await Deno.writeTextFile(cropFile, (await Deno.readTextFile(cropFile)).replace("VARIANT = 1", "VARIANT = 2"));
  const status = await cli(root, ["status"]);
  assert.match(status.stdout, /crop\s+stale\s+\w+\s+code stages\/crop\.js changed/);
  assert.match(status.stdout, /resize\s+stale\s+\?+\s+input crop will be re-made/);
  assert.match(status.stdout, /download\s+fresh/);
  await cli(root, ["run"]);
  assert.deepEqual(await takeRuns(root), ["crop", "resize", "shard", "train", "evaluate", "render"]);
});

Deno.test("an edit that leaves crop's output unchanged re-runs crop only (downstream keys match)", async () => {
  const root = await makeStubProject();
  await cli(root, ["run"]);
  await takeRuns(root);
  await Deno.writeTextFile(join(root, "stages", "crop.js"), "\n// a comment\n", { append: true });
  await cli(root, ["run"]);
  assert.deepEqual(await takeRuns(root), ["crop"]);
});

Deno.test("switching params back restores the earlier artifacts without running a stage", async () => {
  const root = await makeStubProject();
  await cli(root, ["run"]);
  const before = await Deno.readTextFile(join(root, "pipeline.lock.json"));
  await cli(root, ["run", "--set", "train.lr=0.001"]);
  await takeRuns(root);
  const back = await cli(root, ["run"]);
  assert.equal(back.code, 0);
  assert.deepEqual(await takeRuns(root), []);
  assert.equal(await Deno.readTextFile(join(root, "pipeline.lock.json")), before);
  const latest = await Deno.readTextFile(join(root, "outputs", "latest", "train", "train.txt"));
  assert.match(latest, /"train\.lr":0\.0002/);
});

Deno.test("--from, --only, --until and --dry-run select stages", async () => {
  const root = await makeStubProject();
  const dry = await cli(root, ["run", "--dry-run"]);
  assert.equal(dry.code, 0);
  assert.deepEqual(await takeRuns(root), []);
  assert.equal(await exists(join(root, "pipeline.lock.json")), false);
  await cli(root, ["run", "--until", "shard"]);
  assert.deepEqual(await takeRuns(root), ["download", "crop", "resize", "shard"]);
  await cli(root, ["run", "--only", "train"]);
  assert.deepEqual(await takeRuns(root), ["train"]);
  await cli(root, ["run"]);
  await takeRuns(root);
  await cli(root, ["run", "--from", "train"]);
  assert.deepEqual(await takeRuns(root), ["train", "evaluate", "render"]);
  const only = await cli(root, ["run", "--only", "render", "--set", "train.lr=0.5"]);
  assert.equal(only.code, 2);
  assert.match(only.stderr, /not up to date.*--until train/);
});

Deno.test("SIGKILL in the middle of a stage leaves no final cache entry; the next run completes and takes over the lock", async () => {
  const root = await makeStubProject();
  await cli(root, ["run", "--until", "shard"]);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "main.ts"), "run", "--set", "train.sleep_ms=60000"],
    cwd: root,
    stdout: "null",
    stderr: "null",
  }).spawn();
  // train has written its partial artifact and is sleeping inside the stage.
  await waitFor(
    async () => {
      for (const dir of await partialDirs(root)) if (await exists(join(dir, "out", "train.txt"))) return true;
      return false;
    },
    30_000,
    "train to start",
  );
  child.kill("SIGKILL");
  await child.status;
  const entries = [...Deno.readDirSync(join(root, "outputs", "cache"))].map((entry) => entry.name);
  const lock = JSON.parse(await Deno.readTextFile(join(root, "pipeline.lock.json")));
  assert.equal(lock.stages.train, undefined, "the lock names no train artifact");
  assert.ok(await exists(join(root, "outputs", "run.lock")), "the killed run's lock is still there");
  const trainKeys = entries.filter((name) => /^[0-9a-f]{64}$/.test(name));
  assert.equal(trainKeys.length, 4, "only the four finished stages are in the cache");
  const next = await cli(root, ["run", "--set", "train.sleep_ms=1"]);
  assert.equal(next.code, 0, next.stderr);
  assert.match(next.stderr, /taking over .*run\.lock: its holder \(pid \d+/);
  const trained = await Deno.readTextFile(join(root, "outputs", "latest", "train", "train.txt"));
  assert.notEqual(trained, "partial");
});

Deno.test("a second concurrent run exits with a clear message and the cache stays valid", async () => {
  const root = await makeStubProject();
  // The first run's train waits for `release`: it still holds the run lock when the second starts.
  const release = join(root, "release");
  const first = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "main.ts"), "run"],
    cwd: root,
    env: { STUB_HOLD_train: release },
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitFor(() => exists(join(root, "outputs", "run.lock")), 30_000, "the first run to take the lock");
  const second = await cli(root, ["run"]);
  assert.equal(second.code, 3);
  assert.match(second.stderr, /^busy: another run \(pid \d+.*holds .*run\.lock; wait for it to finish/m);
  await Deno.writeTextFile(release, "");
  assert.equal((await first.status).code, 0);
  const check = await cli(root, ["verify", "--cache"]);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /7 cache entries re-hashed, 0 corrupt/);
});

Deno.test("bad params and stage names give one-line errors, exit code 2, and write nothing", async () => {
  const root = await makeStubProject();
  const cases: [string[], RegExp][] = [
    [
      ["run", "--set", "train.lrr=1"],
      /^error: --set train\.lrr=1: unknown param 'train\.lrr'; did you mean 'train\.lr'\?$/,
    ],
    [["run", "--set", "train.lr=fast"], /^error: --set train\.lr=fast: param 'train\.lr' must be a number/],
    [["run", "--set", "nokey"], /^error: --set nokey: expected key=value/],
    [
      ["run", "--set", "train.epochs=0"],
      /^error: --set train\.epochs=0: param 'train\.epochs' must be an integer >= 1/,
    ],
    [
      ["status", "--set", "crop.box=wide"],
      /^error: --set crop\.box=wide: param 'crop\.box' must be one of celeba, dcgan/,
    ],
    [["run", "--from", "trian"], /^error: unknown stage 'trian'; stages are: download, crop/],
    [["run", "--params", "missing.json"], /^error: params file missing\.json not found/],
    [["frobnicate"], /^error: unknown command 'frobnicate'/],
  ];
  for (const [args, pattern] of cases) {
    const result = await cli(root, args);
    assert.equal(result.code, 2, args.join(" "));
    assert.equal(result.stderr.trim().split("\n").length, 1, `one line for ${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr.trim(), pattern);
  }
  await Deno.writeTextFile(join(root, "bad.json"), '{\n  "train": {\n    "lr": 0.1,\n  }\n}\n');
  const malformed = await cli(root, ["run", "--params", "bad.json"]);
  assert.equal(malformed.code, 2);
  assert.match(malformed.stderr.trim(), /^error: bad\.json:4: invalid JSON/);
  assert.equal(await exists(join(root, "outputs")), false, "nothing written");
  assert.deepEqual(await takeRuns(root), []);
});

Deno.test("dag prints the stages in order and a Mermaid flowchart", async () => {
  const root = await makeStubProject();
  const result = await cli(root, ["dag"]);
  assert.equal(result.code, 0);
  assert.match(result.stdout, /stages \(run order\):\n\s+download\n/);
  assert.match(result.stdout, /flowchart LR[\s\S]*train --> evaluate/);
});

Deno.test("racy rule: a file hashed >= 100 ms after its millisecond mtime is trusted; whole-second times keep 2 s", () => {
  const mtime = 1_796_000_000_123; // a millisecond mtime (ext4, xfs, btrfs, tmpfs)
  const ctime = 1_796_000_000_000; // Deno gives ctime in whole seconds
  assert.equal(isRacy(mtime + 50, mtime, ctime), true, "hashed 50 ms after the write");
  assert.equal(isRacy(mtime + 150, mtime, ctime), false, "hashed 150 ms after the write");
  assert.equal(
    isRacy(mtime + 60_000, mtime, ctime + 60_000),
    false,
    "a later ctime (chmod, rename) changes no content",
  );
  const coarse = 1_796_000_000_000; // a file system with whole-second times
  assert.equal(isRacy(coarse + 1_500, coarse, coarse), true, "coarse: 1.5 s after the write");
  assert.equal(isRacy(coarse + 2_500, coarse, coarse), false, "coarse: 2.5 s after the write");
});
