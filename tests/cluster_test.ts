/**
 * The Slurm executor against a real single-node cluster (tests/support/slurm_cluster.ts): the tiny
 * profile as Slurm jobs gives a local run's bytes; failed, cancelled and timed-out jobs and a
 * node that cannot see the cache each end in one line with the job id and log; Ctrl-C scancels.
 * Named to sort first: `deno test --parallel` starts files in name order, and this, the longest
 * (two minutes, much of it waiting on Slurm), then runs beside the rest of the suite, not after it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  exists,
  facegan,
  partialDirs,
  projectCopy,
  readLock,
  REPO,
  scratchDir,
  tinyDataCopy,
  waitFor,
} from "./support/helpers.ts";
import { cli, makeStubProject } from "./support/stub_project.ts";
import { SlurmCluster, slurmMissing } from "./support/slurm_cluster.ts";
import { describeEnd, parseJob } from "../pipeline/executors/slurm.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];
const STAGES = ["download", "crop", "shard", "train", "export", "evaluate", "render"];

/** A CLI run whose stderr can be watched while it goes. */
class Pipeline {
  stderr = "";
  readonly done: Promise<{ code: number; stderr: string }>;
  private readonly child: Deno.ChildProcess;

  constructor(cwd: string, args: string[], env: Record<string, string>) {
    const child = new Deno.Command(Deno.execPath(), { args, cwd, env, stdout: "null", stderr: "piped" }).spawn();
    this.child = child;
    this.done = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) this.stderr += chunk;
      return { code: (await child.status).code, stderr: this.stderr };
    })();
  }

  /** The stub project's CLI in `root`. */
  static stub(root: string, args: string[], env: Record<string, string>): Pipeline {
    return new Pipeline(root, ["run", "-A", "--config", join(REPO, "deno.json"), join(root, "main.ts"), ...args], env);
  }

  /** Wait until stderr matches `pattern` (or the run ends); the match. */
  async waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    this.done.then(() => ended = true);
    while (true) {
      const match = this.stderr.match(pattern);
      if (match) return match;
      if (ended || Date.now() > deadline) throw new Error(`no ${pattern} in:\n${this.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  kill(signal: Deno.Signal) {
    this.child.kill(signal);
  }
}

/** Finished cache entries (a key's dir, not a partial one). */
async function finishedEntries(root: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(root, "outputs", "cache"))) {
    if (/^[0-9a-f]{64}$/.test(entry.name)) names.push(entry.name);
  }
  return names;
}

/** The run's one error line (no other line says "error:", Slurm's own included), which matches `pattern`. */
function oneErrorLine(stderr: string, pattern: RegExp): RegExpMatchArray {
  const lines = stderr.split("\n").filter((line) => line.includes("error:"));
  assert.equal(lines.length, 1, stderr);
  const match = lines[0].match(pattern);
  assert.ok(match, `unexpected error line: ${lines[0]}`);
  return match;
}

/** The one error line for train's job: its id and log path; the log exists. */
async function trainError(stderr: string, what: RegExp): Promise<{ id: string; log: string }> {
  const match = oneErrorLine(stderr, new RegExp(`^error: train: Slurm job (\\d+) ${what.source}.*; log: (\\S+)$`));
  assert.ok(await exists(match[2]), `the log ${match[2]} exists`);
  return { id: match[1], log: match[2] };
}

/** The project's Slurm config: `{}`, the cluster's defaults (--executor slurm needs one). */
async function withSlurmConfig(root: string): Promise<string> {
  await Deno.writeTextFile(join(root, "slurm.json"), "{}\n");
  return root;
}

// deno-lint-ignore no-explicit-any
type ExperimentRecord = any;

async function experiment(root: string, name: string): Promise<ExperimentRecord> {
  return JSON.parse(await Deno.readTextFile(join(root, "experiments", `${name}.json`)));
}

/**
 * A PATH whose `sbatch` logs each call's arguments (one line, with --job-name=STAGE-KEY) to
 * `calls` before it runs the real one: every submission counted, whoever makes it.
 */
async function countingSbatch(calls: string): Promise<string> {
  const real = new TextDecoder().decode(
    (await new Deno.Command("sh", { args: ["-c", "command -v sbatch"] }).output()).stdout,
  )
    .trim();
  const dir = await scratchDir({ prefix: "facegan-sbatch-" });
  await Deno.writeTextFile(join(dir, "sbatch"), `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${real}' "$@"\n`);
  await Deno.chmod(join(dir, "sbatch"), 0o755);
  return `${dir}:${Deno.env.get("PATH")}`;
}

/** The stage-key job names sbatch was called with, in order. */
async function sbatchCalls(calls: string): Promise<string[]> {
  const text = await Deno.readTextFile(calls).catch(() => "");
  return text.split("\n").filter(Boolean).map((line) => line.match(/--job-name=(\S+)/)![1]);
}

const missing = slurmMissing();

Deno.test({
  ...requires("stages run as Slurm jobs on a real single-node cluster", missing),
  fn: async (t) => {
    // A project whose cache the node does not see (made first: slurmd starts with it hidden).
    const unshared = await withSlurmConfig(await makeStubProject());
    await Deno.mkdir(join(unshared, "outputs", "cache"), { recursive: true });
    const cluster = await SlurmCluster.start([join(unshared, "outputs", "cache")]);
    const env = cluster.env;
    try {
      // Slurm's time limits are whole minutes, so the time-out case runs beside the others.
      const slow = await makeStubProject();
      await Deno.writeTextFile(join(slow, "slurm-test.json"), JSON.stringify({ stages: { train: { time: "1" } } }));
      const overTime = Pipeline.stub(
        slow,
        ["run", "--set", "train.sleep_ms=300000", "--executor", "train=slurm", "--slurm-config", "slurm-test.json"],
        env,
      );

      const slurmRoot = await withSlurmConfig(await projectCopy());
      // The local side only has to make the same bytes: its data stages come cached.
      const localRoot = await withSlurmConfig(await tinyDataCopy());
      await t.step("--executor slurm runs every stage as a Slurm job; outputs equal a local run's", async () => {
        const [slurm, local] = await Promise.all([
          facegan(slurmRoot, ["run", ...TINY, "--executor", "slurm"], env),
          facegan(localRoot, ["run", ...TINY]),
        ]);
        assert.equal(slurm.code, 0, slurm.stderr);
        assert.equal(local.code, 0, local.stderr);
        const submitted = [...slurm.stderr.matchAll(/^ {2}(\w+): Slurm job (\d+) submitted \(log: (\S+)\)$/gm)];
        assert.deepEqual(submitted.map((match) => match[1]).sort(), [...STAGES].sort());
        assert.equal(new Set(submitted.map((match) => match[2])).size, STAGES.length, "one job id per stage");
        for (const match of submitted) assert.ok(await exists(match[3]), match[3]);
        assert.match(slurm.stderr, /^ {2}train: epoch 2: D /m, "the job's log is streamed into the run's output");
        const [slurmLock, localLock] = [await readLock(slurmRoot), await readLock(localRoot)];
        for (const stage of STAGES) {
          assert.equal(slurmLock.stages[stage].key, localLock.stages[stage].key, stage);
          assert.equal(slurmLock.stages[stage].output, localLock.stages[stage].output, stage);
        }
        const queue = await cluster.queue();
        for (const match of submitted) assert.ok(!queue.includes(match[2]), `job ${match[2]} is still queued`);
      });

      await t.step("--executor train=slurm runs only train on Slurm, and the lock stays byte-identical", async () => {
        const before = await Deno.readTextFile(join(localRoot, "pipeline.lock.json"));
        const again = await facegan(localRoot, ["run", ...TINY, "--from", "train", "--executor", "train=slurm"], env);
        assert.equal(again.code, 0, again.stderr);
        const submitted = [...again.stderr.matchAll(/^ {2}(\w+): Slurm job \d+ submitted/gm)].map((match) => match[1]);
        assert.deepEqual(submitted, ["train"]);
        const ran = [...again.stderr.matchAll(/✓ (\w+)\s+ran in/g)].map((match) => match[1]);
        assert.deepEqual(ran.sort(), ["evaluate", "export", "render", "train"]);
        assert.equal(await Deno.readTextFile(join(localRoot, "pipeline.lock.json")), before);
      });

      await t.step("verify --executor slurm recomputes on the cluster and compares here", async () => {
        const verified = await facegan(slurmRoot, ["verify", "train", "--executor", "train=slurm"], env);
        assert.equal(verified.code, 0, verified.stderr);
        assert.match(verified.stderr, /^ {2}train: Slurm job \d+ submitted/m);
        assert.match(verified.stdout, /^train\s+reproducible\s+[0-9a-f]{12}$/m);
      });

      await t.step(
        "exp run --executor slurm -j 4: 2 lr x 2 seeds done, data stages once, every train its own job, a local sweep's bytes",
        async () => {
          const sweep = ["exp", "run", ...TINY, "--set", "train.lr=0.0002,0.0004", "--seeds", "2", "--name", "s"];
          const onCluster = await withSlurmConfig(await projectCopy());
          const here = await tinyDataCopy();
          const [slurm, local] = await Promise.all([
            facegan(onCluster, [...sweep, "--executor", "slurm", "-j", "4"], env),
            facegan(here, [...sweep, "-j", "4"]),
          ]);
          assert.equal(slurm.code, 0, slurm.stderr);
          assert.equal(local.code, 0, local.stderr);
          assert.match(slurm.stderr, /^seeds: train\.seed = 1, 2 for each of 2 config\(s\)/m);
          assert.match(slurm.stderr, /^running 4 experiment\(s\), 4 at a time$/m);
          const names = ["s-1", "s-2", "s-3", "s-4"];
          const records = await Promise.all(names.map((name) => experiment(onCluster, name)));
          assert.deepEqual(records.map((r) => r.status), ["done", "done", "done", "done"]);
          assert.deepEqual(records.map((r) => [r.overlay["train.lr"], r.overlay["train.seed"]]), [
            [0.0002, 1],
            [0.0002, 2],
            [0.0004, 1],
            [0.0004, 2],
          ]);
          // Every stage of every experiment a job of its own; a key shared by experiments, one job.
          const jobs = records.flatMap((r) => r.jobs);
          const keys = new Set(records.flatMap((r) => STAGES.map((stage) => r.stages[stage].key)));
          assert.equal(keys.size, 3 + 4 * 4, "the data stages shared, the rest one per experiment");
          assert.deepEqual(new Set(jobs.map((job: ExperimentRecord) => job.key)), keys);
          assert.equal(jobs.length, keys.size, "one job per key");
          assert.equal(new Set(jobs.map((job: ExperimentRecord) => job.id)).size, jobs.length, "distinct job ids");
          for (const stage of ["download", "crop", "shard"]) {
            assert.equal(
              [...slurm.stderr.matchAll(new RegExp(`^ {2}${stage}: Slurm job \\d+ submitted`, "gm"))].length,
              1,
            );
          }
          for (const r of records) {
            const trains = r.jobs.filter((job: ExperimentRecord) => job.stage === "train");
            assert.equal(trains.length, 1, `${r.name}'s train is its own job`);
            assert.equal(trains[0].key, r.stages.train.key);
            assert.match(slurm.stderr, new RegExp(`^ {2}train: Slurm job ${trains[0].id} submitted`, "m"));
          }
          for (const name of names) {
            const [remote, local] = [await experiment(onCluster, name), await experiment(here, name)];
            for (const stage of STAGES) {
              assert.equal(remote.stages[stage].key, local.stages[stage].key, `${name} ${stage}`);
              assert.equal(remote.stages[stage].output, local.stages[stage].output, `${name} ${stage}`);
            }
          }
          const board = JSON.parse((await facegan(onCluster, ["exp", "show", "--json"])).stdout);
          assert.deepEqual(board.rows.map((row: ExperimentRecord) => row.experiments), [["s-1", "s-2"], [
            "s-3",
            "s-4",
          ]]);
          await Deno.remove(onCluster, { recursive: true });
          await Deno.remove(here, { recursive: true });
        },
      );

      await t.step(
        "a SIGKILLed exp runner: exp start --executor slurm watches its running jobs (no second sbatch), records every result",
        async () => {
          const root = await withSlurmConfig(await makeStubProject());
          // train waits for a file the test makes: its jobs still run when the runner is killed
          await Deno.writeTextFile(
            join(root, "stages", "train.js"),
            `import { run as stub } from "./common.js";
export async function run(ctx) {
  while (!(await Deno.stat(ctx.root + "/release").then(() => true, () => false))) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stub(ctx);
}
`,
          );
          const calls = join(root, "sbatch-calls.txt");
          const counted = { ...env, PATH: await countingSbatch(calls) };
          const sweep = ["exp", "run", "--set", "train.lr=0.1,0.2", "--name", "k", "--executor", "slurm", "-j", "2"];
          const runner = Pipeline.stub(root, sweep, counted);
          const running = /^ {2}train: Slurm job (\d+) running on/gm;
          await waitFor(
            () => Promise.resolve([...runner.stderr.matchAll(running)].length === 2),
            120_000,
            "both trainings running",
          );
          const trainJobs = [...runner.stderr.matchAll(running)].map((match) => match[1]).sort();
          const recorded = async () =>
            (await Promise.all(["k-1", "k-2"].map((name) => experiment(root, name))))
              .flatMap((r) =>
                r.jobs.filter((job: ExperimentRecord) => job.stage === "train").map((job: ExperimentRecord) => job.id)
              )
              .sort();
          assert.deepEqual(await recorded(), trainJobs, "each submitted train job is in its experiment's record");
          runner.kill("SIGKILL");
          await runner.done;
          assert.deepEqual((await cluster.queue()).filter((id) => trainJobs.includes(id)).sort(), trainJobs);

          const start = Pipeline.stub(root, ["exp", "start", "--executor", "slurm"], counted);
          const watching =
            /^ {2}train: Slurm job (\d+) of an earlier run is still running: watching it \(not resubmitted\)$/gm;
          await waitFor(
            () => Promise.resolve([...start.stderr.matchAll(watching)].length === 2),
            120_000,
            "both jobs attached",
          );
          await Deno.writeTextFile(join(root, "release"), "");
          const result = await start.done;
          assert.equal(result.code, 0, result.stderr);
          assert.deepEqual([...result.stderr.matchAll(watching)].map((match) => match[1]).sort(), trainJobs);
          const names = await sbatchCalls(calls);
          assert.equal(names.filter((name) => name.startsWith("train-")).length, 2, "no second sbatch of train");
          assert.equal(new Set(names).size, names.length, `a stage's key submitted twice: ${names.join(" ")}`);
          assert.equal(names.length, 4 + 2 * 3, "the four data stages once, three stages per experiment");
          for (const name of ["k-1", "k-2"]) {
            const r = await experiment(root, name);
            assert.equal(r.status, "done");
            assert.equal(typeof r.metrics.values.score, "number");
            assert.equal(r.attempts, 2);
          }
          assert.deepEqual(await recorded(), trainJobs);
          const ran = (await Deno.readTextFile(join(root, "runs.log"))).split("\n").filter(Boolean).sort();
          assert.deepEqual(ran, [
            "crop",
            "download",
            "evaluate",
            "evaluate",
            "render",
            "render",
            "resize",
            "shard",
            "train",
            "train",
          ], "nothing ran twice");
        },
      );

      await t.step("a stage that fails in its job: one line with the job id and log, nothing promoted", async () => {
        const root = await withSlurmConfig(await makeStubProject());
        await Deno.writeTextFile(
          join(root, "stages", "train.js"),
          `export function run() { throw new Error("train broke on purpose"); }\n`,
        );
        const result = await Pipeline.stub(root, ["run", "--executor", "slurm"], env).done;
        assert.equal(result.code, 1, result.stderr);
        const { log } = await trainError(result.stderr, /failed on node1 \(exit 1\)/);
        assert.match(await Deno.readTextFile(log), /train broke on purpose/);
        assert.equal((await finishedEntries(root)).length, 4, "only the four stages before train are in the cache");
      });

      await t.step("a job cancelled with scancel: one line with the job id and log, nothing promoted", async () => {
        const root = await withSlurmConfig(await makeStubProject());
        const run = Pipeline.stub(root, ["run", "--set", "train.sleep_ms=300000", "--executor", "train=slurm"], env);
        const [, id] = await run.waitFor(/train: Slurm job (\d+) running on/);
        const cancel = await new Deno.Command("scancel", { args: [id], env }).output();
        assert.ok(cancel.success);
        const result = await run.done;
        assert.equal(result.code, 1, result.stderr);
        assert.equal((await trainError(result.stderr, /was cancelled/)).id, id);
        assert.equal((await finishedEntries(root)).length, 4);
      });

      await t.step("Ctrl-C of the pipeline scancels its running job: none left in squeue", async () => {
        const root = await withSlurmConfig(await makeStubProject());
        const run = Pipeline.stub(root, ["run", "--set", "train.sleep_ms=300000", "--executor", "slurm"], env);
        const [, id] = await run.waitFor(/train: Slurm job (\d+) running on/);
        assert.ok((await cluster.queue()).includes(id));
        // Slurm says running before the stage in the job has started; its first saved progress says that.
        const started = async () =>
          (await Promise.all((await partialDirs(root)).map((dir) => exists(join(dir, "resume_point.txt"))))).some(
            Boolean,
          );
        await waitFor(started, 60_000, "train's resume point");
        run.kill("SIGINT");
        const result = await run.done;
        assert.equal(result.code, 130, result.stderr);
        assert.match(result.stderr, new RegExp(`train: Slurm job ${id} cancelled`));
        assert.match(result.stderr, /^interrupted: train's progress kept \(step 1 of 2\); run again to resume$/m);
        assert.ok(!(await cluster.queue()).includes(id), `job ${id} is still in squeue`);
        assert.equal(await exists(join(root, "outputs", "run.lock")), false);
        assert.equal((await finishedEntries(root)).length, 4);
      });

      await t.step({
        ...requires(
          "a node that cannot see the cache: one line saying so",
          !cluster.hidden && "no private mount namespace here to hide the cache from the node",
        ),
        fn: async () => {
          const result = await Pipeline.stub(unshared, ["run", "--executor", "slurm"], env).done;
          assert.equal(result.code, 1, result.stderr);
          oneErrorLine(
            result.stderr,
            /^error: download: Slurm job \d+: node node1 cannot see \S+: the project and the cache must be on a filesystem the nodes share, at the same paths; log: \S+$/,
          );
          assert.deepEqual(await finishedEntries(unshared), []);
        },
      });

      await t.step("sbatch refusing the request (no such partition): one line, exit 2", async () => {
        const root = await makeStubProject();
        await Deno.writeTextFile(join(root, "slurm.json"), JSON.stringify({ partition: "nosuch" }));
        const result = await Pipeline.stub(root, ["run", "--executor", "train=slurm"], env).done;
        assert.equal(result.code, 2, result.stderr);
        oneErrorLine(
          result.stderr,
          /^error: train: sbatch refused the job: .*Invalid partition.*; check the Slurm config \(\S+slurm\.json\)$/,
        );
      });

      await t.step("sbatch failing while the controller is down is tried again with backoff", async () => {
        const root = await withSlurmConfig(await makeStubProject());
        await cluster.stopController();
        const run = Pipeline.stub(root, ["run", "--executor", "train=slurm"], env);
        try {
          await run.waitFor(/train: sbatch failed \(.+\); trying again in 1s \(attempt 2 of 6\)/);
        } finally {
          await cluster.startController();
        }
        const result = await run.done;
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, /train: Slurm job \d+ submitted/);
        assert.equal((await finishedEntries(root)).length, 7);
      });

      await t.step("a job over its time limit: one line with the job id and log, nothing promoted", async () => {
        const result = await overTime.done;
        assert.equal(result.code, 1, result.stderr);
        await trainError(result.stderr, /went over its time limit \(00:01:00\)/);
        assert.equal((await finishedEntries(slow)).length, 4);
      });
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test("a bad --executor or Slurm config: one line, exit 2, nothing written", async () => {
  const cases: [string[], string | null, RegExp][] = [
    [["--executor", "gpu"], null, /^error: --executor gpu: unknown executor 'gpu'; executors: local, slurm$/],
    [
      ["--executor", "trian=slurm"],
      null,
      /^error: --executor trian=slurm: unknown stage 'trian'; stages are: download, /,
    ],
    [["--executor", "slurm", "--slurm-config", "nosuch.json"], null, /^error: nosuch\.json does not exist$/],
    [
      ["--executor", "train=slurm"],
      null,
      /^error: --executor train=slurm needs the Slurm config slurm\.json \(sbatch options: .*\): write one \(`\{\}` takes the cluster's defaults\) or name one with --slurm-config FILE$/,
    ],
    [["--executor", "slurm"], "{", /^error: slurm\.json is not valid JSON: /],
    [
      ["--executor", "slurm"],
      '{"partitoin": "gpu"}',
      /^error: slurm\.json: unknown key 'partitoin'; keys: partition, /,
    ],
    [
      ["--executor", "slurm"],
      '{"cpus": "many"}',
      /^error: slurm\.json: 'cpus' must be a positive integer \(got "many"\)$/,
    ],
    [
      ["--executor", "train=slurm"],
      '{"stages": {"trian": {"gres": "gpu:1"}}}',
      /^error: slurm\.json: stages\.trian: no such stage; stages are: download, /,
    ],
  ];
  for (const [args, config, expected] of cases) {
    const root = await makeStubProject();
    if (config !== null) await Deno.writeTextFile(join(root, "slurm.json"), config);
    const result = await cli(root, ["run", ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr.trim(), expected);
    assert.equal(await exists(join(root, "outputs")), false, "nothing written");
  }
});

Deno.test("how a job ended, from scontrol's fields: out of memory, the heap limit and a lost node name the job, node and log", () => {
  const line = (state: string, reason: string) =>
    `JobId=7 JobName=train-abc JobState=${state} Reason=${reason} Dependency=(null) ExitCode=0:9 ` +
    `TimeLimit=01:00:00 NodeList=gpu3 BatchHost=gpu3 StdOut=/p/log`;
  const log = "/p/outputs/logs/train-abc-slurm-7.log";
  assert.deepEqual(describeEnd(parseJob("7", line("OUT_OF_MEMORY", "OutOfMemory")), "/p/part", log), {
    code: 1,
    line: `Slurm job 7 ran out of memory on gpu3; ask for more ('mem' in the Slurm config); log: ${log}`,
  });
  assert.deepEqual(describeEnd(parseJob("7", line("NODE_FAIL", "NodeDown")), "/p/part", log), {
    code: 1,
    line: `Slurm job 7 was lost with its node gpu3 (NODE_FAIL); run again; log: ${log}`,
  });
  const heap = describeEnd(parseJob("7", line("FAILED", "NonZeroExitCode").replace("0:9", "0:5")), "/p/part", log);
  assert.match(heap.line!, /^Slurm job 7 ran out of memory on gpu3: it reached the JavaScript heap limit; raise/);
  assert.deepEqual(describeEnd(parseJob("7", line("COMPLETED", "None")), "/p/part", log), { code: 0 });
});
