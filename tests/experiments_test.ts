/**
 * Experiments (`exp`) on the tiny profile, through the real CLI: a grid run concurrently, the
 * leaderboard, apply, gc, a killed queue runner resumed, a failing experiment, bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, facegan, projectCopy, readLock, waitFor } from "./helpers.ts";

const TINY = ["--params", "params/tiny.json"];

// deno-lint-ignore no-explicit-any
type Record = any;

async function record(root: string, name: string): Promise<Record> {
  return JSON.parse(await Deno.readTextFile(join(root, "experiments", `${name}.json`)));
}

function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern, "g"))?.length ?? 0;
}

Deno.test("exp run: an unknown key, an empty list, a malformed range, -j 0, a bad value -> one line, exit 2, nothing queued", async () => {
  const root = await projectCopy();
  const cases: [string[], RegExp][] = [
    [["--set", "train.lrr=0.1,0.2"], /unknown param 'train\.lrr'; did you mean 'train\.lr'/],
    [["--set", "train.lr="], /empty value list/],
    [["--set", "train.lr=0.1,0.2", "--set", "train.beta1=,"], /--set train\.beta1=,: empty value list/],
    [["--random", "2", "--seed", "1", "--set", "train.lr=log:1e-4.."], /malformed range/],
    [["--random", "2", "--set", "train.beta1=0.5..0.1"], /malformed range \(its low end is above its high end\)/],
    [["--set", "train.lr=1e-4..1e-3"], /is a range: draw from it with --random/],
    [["-j", "0", "--set", "train.lr=0.1,0.2"], /-j must be a whole number >= 1, got 0/],
    [["--set", "train.epochs=1,-1"], /param 'train\.epochs' must be an integer >= 1, got -1/],
  ];
  for (const [args, message] of cases) {
    for (const queue of [[], ["--queue"]]) {
      const result = await facegan(root, ["exp", "run", ...TINY, ...queue, ...args]);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], message);
      assert.ok(!(await exists(join(root, "experiments"))), "nothing queued");
      assert.ok(!(await exists(join(root, "outputs", "cache"))), "nothing ran");
    }
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test("exp: a 2x2 grid at -j 2 runs 4 experiments, the data stages once, two trainings at once; show, apply, rm, gc", async (t) => {
  const root = await projectCopy();
  const grid = ["--set", "train.lr=0.0002,0.0004", "--set", "train.beta1=0.5,0.3", "--name", "g", "-j", "2"];
  const result = await facegan(root, ["exp", "run", ...TINY, ...grid]);
  assert.equal(result.code, 0, result.stderr);
  const names = ["g-1", "g-2", "g-3", "g-4"];
  const records = await Promise.all(names.map((name) => record(root, name)));

  await t.step("4 experiments done, each with its overlay, lock entries and metrics", () => {
    assert.deepEqual(records.map((r) => r.status), ["done", "done", "done", "done"]);
    assert.deepEqual(records.map((r) => [r.overlay["train.lr"], r.overlay["train.beta1"]]), [
      [0.0002, 0.5],
      [0.0002, 0.3],
      [0.0004, 0.5],
      [0.0004, 0.3],
    ]);
    for (const r of records) {
      assert.equal(Object.keys(r.stages).length, 7);
      assert.equal(r.stages.train.params["train.lr"], r.overlay["train.lr"]);
      assert.equal(typeof r.metrics.values.swd_mean, "number");
      assert.equal(typeof r.metrics.floor.swd_mean, "number");
      assert.ok(r.wall_s > 0 && r.started_at && r.finished_at);
      assert.ok("commit" in r);
    }
    assert.equal(new Set(records.map((r) => r.stages.train.key)).size, 4, "four different trainings");
  });

  await t.step("the data stages ran once, shared by all four", () => {
    for (const stage of ["download", "crop", "shard"]) {
      assert.equal(count(result.stderr, new RegExp(`▶ ${stage} `)), 1, `${stage} started once`);
      assert.equal(records.filter((r) => r.runs[stage].action === "ran").length, 1, stage);
      assert.equal(new Set(records.map((r) => r.stages[stage].key)).size, 1);
    }
    assert.equal(count(result.stderr, /▶ train /), 4);
  });

  await t.step("two trainings ran at the same time", () => {
    const spans = records.map((r) => [Date.parse(r.runs.train.started_at), Date.parse(r.runs.train.finished_at)]);
    const overlapping = spans.some(([start, end], i) =>
      spans.some(([otherStart, otherEnd], j) => i !== j && start < otherEnd && otherStart < end)
    );
    assert.ok(overlapping, `train spans: ${JSON.stringify(spans)}`);
  });

  await t.step(
    "exp show --json: one row per experiment with the varying params and metrics; the table marks the best",
    async () => {
      const shown = await facegan(root, ["exp", "show", "--json", "--sort", "swd_mean"]);
      assert.equal(shown.code, 0, shown.stderr);
      const board = JSON.parse(shown.stdout);
      assert.deepEqual(board.params, ["train.beta1", "train.lr"]);
      assert.equal(board.rows.length, 4);
      assert.deepEqual(board.rows.map((row: Record) => row.name).sort(), names);
      const swd = board.rows.map((row: Record) => row.metrics.swd_mean.value);
      assert.deepEqual(swd, [...swd].sort((a, b) => a - b), "sorted by swd_mean, lower first");
      assert.equal(board.rows[0].metrics.swd_mean.best, true);
      assert.equal(board.metrics.find((m: Record) => m.name === "swd_mean").floor, records[0].metrics.floor.swd_mean);
      const text = await facegan(root, ["exp", "show"]);
      assert.match(text.stdout, /^experiment\s+status\s+swd_16px\s.*\swall_s\s+train\.beta1\s+train\.lr\n/);
      assert.match(text.stdout, /\n\s*floor\s/);
      assert.ok(text.stdout.includes(" *"));
      const page = await Deno.readTextFile(join(root, "outputs", "experiments.html"));
      assert.equal(count(page, /<img [^>]*src="data:image\/png;base64,/), 4, "each experiment's grid");
      assert.equal(count(page, /<svg /), 2, "losses and per-epoch SWD overlaid");
      for (const r of records) assert.ok(page.includes(`cache/${r.stages.render.key}/out/report.html`));
    },
  );

  await t.step("exp apply + pipeline restores the experiment's artifacts with no stage run", async () => {
    const applied = await facegan(root, ["exp", "apply", "g-3"]);
    assert.equal(applied.code, 0, applied.stderr);
    const run = await facegan(root, ["run"]);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /▶/);
    const lock = await readLock(root);
    for (const [stage, entry] of Object.entries(records[2].stages)) {
      assert.equal(lock.stages[stage].key, (entry as Record).key, stage);
    }
  });

  await t.step("gc keeps what experiments reference; after exp rm their own entries go", async () => {
    const cache = join(root, "outputs", "cache");
    await facegan(root, ["gc"]);
    for (const r of records) assert.ok(await exists(join(cache, r.stages.train.key)));
    const removed = await facegan(root, ["exp", "rm", "g-1"]);
    assert.equal(removed.code, 0, removed.stderr);
    await facegan(root, ["gc"]);
    assert.ok(!(await exists(join(cache, records[0].stages.train.key))), "g-1's training is gone");
    assert.ok(await exists(join(cache, records[1].stages.train.key)));
    assert.ok(await exists(join(cache, records[1].stages.download.key)), "shared with g-2");
  });
  await Deno.remove(root, { recursive: true });
});

Deno.test("exp: a failing experiment is recorded and the others complete; a SIGKILLed queue runner resumes with exp start", async () => {
  const root = await projectCopy();
  // q-1 cannot train (a batch larger than the data): it fails in the train stage.
  const queued = await facegan(root, [
    "exp",
    "run",
    "--queue",
    ...TINY,
    "--set",
    "train.batch_size=1000,32,16",
    "--name",
    "q",
  ]);
  assert.equal(queued.code, 0, queued.stderr);
  assert.equal((await record(root, "q-3")).status, "queued");
  assert.ok(!(await exists(join(root, "outputs", "cache"))), "--queue runs nothing");

  const runner = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "exp", "start", "-j", "1"],
    cwd: root,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitFor(async () => (await record(root, "q-2")).status === "done", 120_000, "q-2 done");
  runner.kill("SIGKILL");
  await runner.status;
  const done = await record(root, "q-2");
  assert.notEqual((await record(root, "q-3")).status, "done", "the kill landed before q-3 finished");

  const resumed = await facegan(root, ["exp", "start"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /\[q-3\] done/);
  assert.doesNotMatch(resumed.stderr, /\[q-[12]\]/, "finished ones are not redone");
  assert.deepEqual(await record(root, "q-2"), done);
  assert.equal((await record(root, "q-3")).status, "done");

  const failed = await record(root, "q-1");
  assert.equal(failed.status, "failed");
  assert.match(failed.error, /stage train failed \(exit 2\): train: train\.batch_size 1000 is larger than/);
  const board = JSON.parse((await facegan(root, ["exp", "show", "--json"])).stdout);
  assert.deepEqual(board.rows.map((row: Record) => [row.name, row.status]), [
    ["q-1", "failed"],
    ["q-2", "done"],
    ["q-3", "done"],
  ]);
  assert.match(board.rows[0].error, /batch_size/);
  await Deno.remove(root, { recursive: true });
});
