/**
 * What the CLI shows while it works: `--json` of status and --dry-run, `-q`, colour only on a
 * terminal without NO_COLOR, the live lines drawn from the stages' progress events, and train's
 * live page named by status during a run. The engine on the stub project; the rest on the tiny
 * profile, with a terminal made by `script` (util-linux).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, makeStubProject } from "./support/stub_project.ts";
import { exists, facegan, tinyDataCopy, waitFor } from "./support/helpers.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];
const ESC = "\x1b";
/** a colour (SGR) escape sequence */
const COLOUR = new RegExp(`${ESC}\\[[0-9;]*m`);

Deno.test("status --json and --dry-run --json: every stage with its decision, structured reasons, key and timings", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  const changed = ["--set", "train.lr=0.001"];

  const status = await cli(root, ["status", "--json", ...changed]);
  assert.equal(status.code, 0, status.stderr);
  const report = JSON.parse(status.stdout);
  const stages = Object.fromEntries(report.stages.map((stage: { stage: string }) => [stage.stage, stage]));
  assert.deepEqual(Object.keys(stages), ["download", "crop", "resize", "shard", "train", "evaluate", "render"]);
  assert.equal(stages.crop.decision, "fresh");
  assert.match(stages.crop.key, /^[0-9a-f]{64}$/);
  assert.deepEqual(stages.crop.reasons, []);
  assert.equal(typeof stages.crop.timings.wall_s, "number");
  assert.match(stages.crop.timings.ran_at, /^\d{4}-\d\d-\d\dT/);
  assert.equal(stages.train.decision, "stale");
  assert.equal(stages.train.action, "run");
  assert.match(stages.train.key, /^[0-9a-f]{64}$/);
  assert.equal(stages.train.timings, null);
  assert.deepEqual(stages.train.reasons, [
    { kind: "param", key: "train.lr", before: 0.0002, after: 0.001, text: "param train.lr: 0.0002 -> 0.001" },
  ]);
  // evaluate reads train, which will be re-made: its key is not known yet
  assert.equal(stages.evaluate.action, "wait");
  assert.equal(stages.evaluate.key, null);
  assert.ok(
    stages.evaluate.reasons.some((reason: { kind: string; stage: string }) =>
      reason.kind === "input" && reason.stage === "train"
    ),
  );
  assert.equal(report.live_view, null);

  const dry = await cli(root, ["run", "--dry-run", "--json", ...changed]);
  assert.equal(dry.code, 0, dry.stderr);
  const planned = JSON.parse(dry.stdout).stages;
  assert.deepEqual(
    planned.map((stage: { stage: string; decision: string }) => `${stage.stage}:${stage.decision}`),
    ["download:fresh", "crop:fresh", "resize:fresh", "shard:fresh", "train:stale", "evaluate:stale", "render:stale"],
  );
  assert.deepEqual(planned[4].reasons, stages.train.reasons);
  assert.equal(dry.stderr, "", "the JSON alone, nothing else");
});

Deno.test("-q prints only the final line, or only the errors; -v adds every stage's timings", async () => {
  const root = await makeStubProject();
  const quiet = await cli(root, ["-q", "run"]);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.match(quiet.stderr, /^done in [\d.]+s: 7 ran, 0 cached; lock: pipeline\.lock\.json, [^\n]*\n$/);
  assert.equal(quiet.stdout, "");

  const starved = await cli(root, ["run", "--quiet", "--set", "train.hog_mb=400"], {
    PIPELINE_STAGE_V8_FLAGS: "--max-old-space-size=64",
  });
  assert.equal(starved.code, 1, starved.stderr);
  assert.deepEqual(starved.stderr.trim().split("\n"), [
    "error: stage train ran out of memory: it reached the JavaScript heap limit; its memory grows with " +
    "train.hog_mb=400, eval.n_samples=10: lower one, or raise the limit " +
    "(PIPELINE_STAGE_V8_FLAGS=--max-old-space-size=MiB)",
  ]);

  const status = await cli(root, ["status", "-q", "--set", "train.lr=0.001"]);
  assert.equal(status.stdout, "7 stages: 4 fresh, 3 stale (train, evaluate, render)\n");

  const verbose = await cli(root, ["run", "-v", "--set", "train.lr=0.003"]);
  assert.equal(verbose.code, 0, verbose.stderr);
  assert.match(verbose.stderr, /^ {2}crop {6}cached [\d.]+s, peak memory \d+ MiB$/m);
  assert.match(verbose.stderr, /^ {2}train {5}ran {4}[\d.]+s/m);
});

/** `args` of the facegan CLI run on a terminal (a pty `script` makes): what the terminal showed. */
async function onTerminal(root: string, args: string[], env: Record<string, string> = {}) {
  const command = [Deno.execPath(), "run", "-A", "main.ts", ...args].map((arg) => `'${arg}'`).join(" ");
  const output = await new Deno.Command("script", {
    args: ["-qefc", command, "/dev/null"],
    cwd: root,
    env: { ...env, COLUMNS: "150", LINES: "40" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, text: new TextDecoder().decode(output.stdout) };
}

const hasScript = new Deno.Command("sh", { args: ["-c", "command -v script"], stdout: "null" }).outputSync().success;

Deno.test({
  ...requires(
    "tiny profile: piped and NO_COLOR output carry no colour codes; a terminal shows colour, a bar per running stage and k of n",
    !hasScript && "`script` from util-linux is absent",
  ),
  fn: async () => {
    const root = await tinyDataCopy();
    const piped = await facegan(root, ["run", ...TINY]);
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(!piped.stderr.includes(ESC) && !piped.stdout.includes(ESC), "no escape code in a pipe");
    // progress events became plain lines, and each finished stage the count
    assert.match(piped.stderr, /^ {2}train: +\d+% {2}[\d,]+\/[\d,]+ img {2}.*epoch \d\/2/m);
    assert.match(piped.stderr, /^ {2}4 of 7 stages done \(57%\)$/m);

    // train alone (--until): its bar is the live line to see; export, evaluate and render add nothing here.
    const coloured = await onTerminal(root, ["run", ...TINY, "--from", "train", "--until", "train"]);
    assert.equal(coloured.code, 0, coloured.text);
    assert.ok(coloured.text.includes(`${ESC}[32mran${ESC}[39m`), "ran in green");
    // the live lines: a bar for train, the count under it
    assert.match(coloured.text, / {2}train +\[[█░]{20}\] +\d+% {2}[\d,]+\/[\d,]+ img/);
    assert.match(coloured.text, /3 of 4 stages done \(75%\) · 1 running/);

    const plain = await onTerminal(root, ["run", ...TINY, "--from", "train", "--until", "train"], { NO_COLOR: "1" });
    assert.equal(plain.code, 0, plain.text);
    assert.doesNotMatch(plain.text, COLOUR);
    assert.match(plain.text, / {2}train +\[[█░]{20}\]/, "still the live lines");
    const status = await onTerminal(root, ["status", ...TINY], { NO_COLOR: "1" });
    assert.doesNotMatch(status.text, COLOUR);
    assert.ok(
      (await onTerminal(root, ["status", ...TINY])).text.includes(`${ESC}[32mfresh${ESC}[39m`),
      "fresh in green",
    );
  },
});

Deno.test("tiny profile: while train runs, its live page shows the latest grid and the losses, and status names it", async () => {
  const root = await tinyDataCopy();
  const run = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "run", ...TINY, "--set", "train.epochs=200"],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const ended = run.output();
  try {
    const index = join(root, "outputs", "live", "index.html");
    await waitFor(() => exists(index), 60_000, "the live view");
    const frame = /<iframe src="(train-[0-9a-f]{12})\/index\.html"/.exec(await Deno.readTextFile(index));
    assert.ok(frame, "the index frames train's page");
    const page = join(root, "outputs", "live", frame[1], "index.html");
    await waitFor(
      async () => (await Deno.readTextFile(page).catch(() => "")).includes("samples after epoch 2"),
      120_000,
      "the grid of epoch 2 on the live page",
    );
    const html = await Deno.readTextFile(page);
    assert.match(html, /<meta http-equiv="refresh" content="\d+">/);
    assert.match(html, /<img alt="samples after epoch \d+" src="data:image\/png;base64,/);
    assert.match(html, /training losses so far/);
    assert.match(html, /<tr><td>1<\/td>/, "the per-epoch table");

    const status = await facegan(root, ["status", ...TINY, "--set", "train.epochs=200"]);
    assert.match(status.stdout, /^live view: outputs\/live\/index\.html \(a run is going on/m);
    const json = JSON.parse((await facegan(root, ["status", "--json", ...TINY])).stdout);
    assert.equal(json.live_view, "outputs/live/index.html");
  } finally {
    run.kill("SIGINT");
    await ended;
  }
  // the run is over: status no longer names a live view
  assert.doesNotMatch((await facegan(root, ["status", ...TINY])).stdout, /live view/);
});
