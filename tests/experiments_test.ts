/**
 * Experiments (`exp`) on the tiny profile, through the real CLI: a grid run concurrently, the
 * leaderboard, apply, gc, a killed queue runner resumed, a failing experiment, bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, facegan, projectCopy, readLock, waitFor } from "./support/helpers.ts";
import { tQuantile } from "../pipeline/experiments/stats.ts";
import { cli, makeStubProject } from "./support/stub_project.ts";

const TINY = ["--params", "params/tiny.json"];

// deno-lint-ignore no-explicit-any
type Record = any;

async function record(root: string, name: string): Promise<Record> {
  return JSON.parse(await Deno.readTextFile(join(root, "experiments", `${name}.json`)));
}

function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern, "g"))?.length ?? 0;
}

Deno.test("exp run: an unknown key, an empty list, a malformed range, -j 0, a bad value, --seeds 0 or with --set train.seed, an unknown executor, no slurm.json -> one line, exit 2, nothing queued", async () => {
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
    [["--seeds", "0", "--set", "train.lr=0.1,0.2"], /^error: --seeds must be a whole number >= 1, got 0$/],
    [
      ["--seeds", "2", "--set", "train.seed=1,2"],
      /^error: --seeds 2 sets train\.seed itself: drop --set train\.seed=\.\.\. \(or drop --seeds and list the seeds in --set\)$/,
    ],
  ];
  // Where stages run is the runner's choice, so these go without --queue (exp start takes them).
  const lr = ["--set", "train.lr=0.1,0.2"];
  const executors: [string[], RegExp][] = [
    [[...lr, "--executor", "gpu"], /^error: --executor gpu: unknown executor 'gpu'; executors: local, slurm$/],
    [[...lr, "--executor", "slurm"], /^error: --executor slurm needs the Slurm config slurm\.json /],
    [[...lr, "--executor", "train=slurm", "--slurm-config", "nosuch.json"], /^error: nosuch\.json does not exist$/],
  ];
  const runs = [
    ...cases.flatMap(([args, message]) => [[args, message], [["--queue", ...args], message]] as [string[], RegExp][]),
    ...executors,
  ];
  for (const [args, message] of runs) {
    const result = await facegan(root, ["exp", "run", ...TINY, ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], message);
    assert.ok(!(await exists(join(root, "experiments"))), "nothing queued");
    assert.ok(!(await exists(join(root, "outputs", "cache"))), "nothing ran");
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
      const swd = board.rows.map((row: Record) => row.metrics.swd_mean.mean);
      assert.deepEqual(swd, [...swd].sort((a, b) => a - b), "sorted by swd_mean, lower first");
      assert.equal(board.rows[0].metrics.swd_mean.best, true);
      assert.equal(board.metrics.find((m: Record) => m.name === "swd_mean").floor, records[0].metrics.floor.swd_mean);
      const text = await facegan(root, ["exp", "show"]);
      assert.match(
        text.stdout,
        /^experiment\s+status\s+n\s+swd_16px\s.*\swall_s\s+train\.seed\s+train\.beta1\s+train\.lr\n/,
      );
      assert.match(
        text.stdout,
        /^ {2}swd_mean: g-\d \(.*, n 1\) leads g-\d \(.*, n 1\) by .*; noise was not measured \(one seed each: repeat with exp run --seeds K\)$/m,
      );
      // the floor row gives each metric's floor with the N per side it and every value were computed at
      const n = records[0].metrics.floor_n.swd_mean;
      assert.equal(board.metrics.find((m: Record) => m.name === "swd_mean").floor_n, n);
      assert.match(text.stdout, new RegExp(`\\n\\s*floor\\s+\\S+ \\(N ${n}\\)\\s`));
      assert.ok(text.stdout.includes(" *"));
      const page = await Deno.readTextFile(join(root, "outputs", "experiments.html"));
      assert.equal(count(page, /<img [^>]*src="data:image\/png;base64,/), 4, "each experiment's grid");
      assert.equal(count(page, /<svg (?!class="spread")/), 2, "losses and per-epoch SWD overlaid");
      assert.equal(count(page, /<svg class="spread"/), 4 * 6, "each metric cell's spread");
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

Deno.test("exp show groups seed repeats: n, mean, sd and per-seed values; Welch's verdict on the lead; the spread drawn", async () => {
  const root = await projectCopy();
  await Deno.mkdir(join(root, "experiments"));
  // three configs: a and b with seeds 7, 8, 9; c with one seed
  const configs: [string, number, number[], number[]][] = [
    ["a", 0.0002, [10.0, 10.5, 9.8], [0.050, 0.053, 0.049]],
    ["b", 0.0004, [12.0, 12.4, 11.7], [0.051, 0.050, 0.052]],
    ["c", 0.0008, [15.0], [0.060]],
  ];
  for (const [prefix, lr, swd, fd] of configs) {
    for (const [i, value] of swd.entries()) {
      const name = `${prefix}-${i + 1}`;
      await Deno.writeTextFile(
        join(root, "experiments", `${name}.json`),
        JSON.stringify({
          version: 1,
          name,
          status: "done",
          params_file: "params.json",
          overlay: { "train.lr": lr, "train.seed": 7 + i },
          params: { "train.lr": lr, "train.seed": 7 + i, "train.epochs": 2 },
          queued_at: `2026-01-01T00:00:0${i}Z`,
          metrics: {
            values: { swd_mean: value, fd_face: fd[i] },
            floor: { swd_mean: 5, fd_face: 0.02 },
            better: { swd_mean: "lower", fd_face: "lower" },
          },
          wall_s: 10 + i,
        }),
      );
    }
  }
  const shown = await facegan(root, ["exp", "show", "--json", "--sort", "swd_mean"]);
  assert.equal(shown.code, 0, shown.stderr);
  const board = JSON.parse(shown.stdout);
  assert.equal(board.seed, "train.seed");
  assert.deepEqual(board.params, ["train.lr"], "the seed is not a param column: it makes the repeats");
  assert.deepEqual(board.rows.map((row: Record) => row.experiments), [["a-1", "a-2", "a-3"], ["b-1", "b-2", "b-3"], [
    "c-1",
  ]]);
  assert.deepEqual(board.rows[0].seeds, [7, 8, 9]);
  const a = board.rows[0].metrics.swd_mean;
  assert.equal(a.n, 3);
  assert.ok(Math.abs(a.mean - 10.1) < 1e-12);
  assert.ok(Math.abs(a.sd - 0.36055512754639896) < 1e-12, String(a.sd));
  assert.deepEqual(a.per_seed, [
    { experiment: "a-1", seed: 7, value: 10.0 },
    { experiment: "a-2", seed: 8, value: 10.5 },
    { experiment: "a-3", seed: 9, value: 9.8 },
  ]);
  assert.equal(a.best, true);
  assert.equal(board.rows[2].metrics.swd_mean.sd, null);
  // Welch's t-test as scipy 1.17.1 computes it (stats.ttest_ind(..., equal_var=False), stats.t.ppf(0.975, df))
  const [swd, fd] = ["swd_mean", "fd_face"].map((metric) => board.verdicts.find((v: Record) => v.metric === metric));
  assert.equal(swd.leader, "a-1");
  assert.equal(swd.runner_up, "b-1");
  assert.equal(swd.measured, true);
  assert.equal(swd.significant, true);
  assert.ok(Math.abs(swd.t - -6.653056282246284) < 1e-9, String(swd.t));
  assert.ok(Math.abs(swd.df - 3.9972318339100354) < 1e-9, String(swd.df));
  assert.ok(Math.abs(swd.p - 0.0026570382404675313) < 1e-9, String(swd.p));
  assert.ok(Math.abs(swd.critical - 2.777203562350734) < 1e-9, String(swd.critical));
  assert.equal(fd.significant, false, "0.0507 against 0.0510 is within the noise");
  assert.ok(Math.abs(fd.p - 0.819371647158372) < 1e-9, String(fd.p));
  assert.ok(Math.abs(fd.critical - 3.261222426061745) < 1e-9, String(fd.critical));

  const text = (await facegan(root, ["exp", "show", "--sort", "swd_mean"])).stdout;
  assert.match(
    text,
    /^a-1,a-2,a-3\s+done\s+3\s+10\.1000 ± 0\.3606 \(2\.02x\) \*\s+0\.0507 ± 0\.0021 \(2\.53x\) \*\s+11\s+7,8,9\s+0\.0002$/m,
  );
  assert.match(text, /^c-1\s+done\s+1\s+15\.0000 \(3\.00x\)\s+0\.0600 \(3\.00x\)\s+10\s+7\s+0\.0008$/m);
  assert.match(
    text,
    /^ {2}swd_mean: a-1,a-2,a-3 \(10\.1000 ± 0\.3606, n 3\) leads b-1,b-2,b-3 \(12\.0333 ± 0\.3512, n 3\) by 1\.9333: larger than the noise \(\|t\| 6\.65 > 2\.78 at df 4\.0, p 0\.0027\)$/m,
  );
  assert.match(
    text,
    /^ {2}fd_face: a-1,a-2,a-3 .* within the noise, not a clear win \(\|t\| 0\.25 <= 3\.26 at df 2\.9/m,
  );
  assert.match(text, /\(Welch's t-test, two-sided, 95%\):$/m);

  const page = await Deno.readTextFile(join(root, "outputs", "experiments.html"));
  assert.equal(count(page, /<svg class="spread"/), 6, "a spread per metric cell");
  assert.equal(count(page, /<circle /), 14, "a dot per seed and metric");
  assert.match(page, /<title>a-2: 10\.5000<\/title>/);
  assert.ok(page.includes("larger than the noise"));

  // One seed per config: the verdict says noise was not measured.
  for (const name of ["a-2", "a-3", "b-2", "b-3"]) await Deno.remove(join(root, "experiments", `${name}.json`));
  const single = JSON.parse((await facegan(root, ["exp", "show", "--json"])).stdout);
  assert.deepEqual(single.verdicts.map((v: Record) => [v.metric, v.measured, v.significant]), [
    ["swd_mean", false, null],
    ["fd_face", false, null],
  ]);
  assert.match(single.verdicts[0].text, /noise was not measured \(one seed each: repeat with exp run --seeds K\)$/);
  await Deno.remove(root, { recursive: true });
});

Deno.test("Student's t quantiles for fractional degrees of freedom match scipy's", () => {
  // scipy 1.17.1: stats.t.ppf(0.975, df)
  const expected: [number, number][] = [
    [1, 12.706204736174694],
    [2, 4.302652729749462],
    [2.5, 3.5746548420036817],
    [3.7, 2.8675207071911895],
    [10, 2.228138851986274],
    [1000, 1.9623390808264083],
  ];
  for (const [df, t] of expected) {
    assert.ok(Math.abs(tQuantile(0.975, df) - t) < 1e-9, `df ${df}: ${tQuantile(0.975, df)}`);
  }
});

Deno.test("exp show: each metric with value / floor beside it, in the table, the page and --json", async () => {
  const root = await makeStubProject();
  const ran = await cli(root, ["exp", "run", "--set", "train.lr=0.0002,0.0005", "-j", "2"]);
  assert.equal(ran.code, 0, ran.stderr);
  const board = JSON.parse((await cli(root, ["exp", "show", "--json"])).stdout);
  const cells = board.rows.map((row: Record) => row.metrics.score);
  // the stub's score is lr * 1000 against a floor of 0.1
  assert.deepEqual(cells.map((cell: Record) => Number(cell.x_floor.toFixed(9))).sort(), [2, 5]);
  assert.equal(board.rows[0].metrics.quality.x_floor, null, "no floor, no ratio");
  const text = (await cli(root, ["exp", "show"])).stdout;
  assert.match(text, /0\.2000 \(2\.00x\) \*/);
  assert.match(text, /0\.5000 \(5\.00x\)/);
  assert.match(
    await Deno.readTextFile(join(root, "outputs", "experiments.html")),
    /<td class="best">0\.2000 \(2\.00x\)/,
  );
});
