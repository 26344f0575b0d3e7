/** facegan itself (not the stub), its seven stages end to end on the tiny profile: report, reproducibility, invalidation. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decode, Image } from "imagescript";
import { exists, facegan, projectCopy, readLock, run, scratchDir } from "./support/helpers.ts";
import { CHROMIUM_FLAGS, findChromium } from "./support/chromium.ts";
import { loadParams } from "../pipeline/core/params.ts";
import { checkParams } from "../pipeline/core/schema.ts";
import { schema } from "../stages/params_schema.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];
const STAGES = ["download", "crop", "shard", "train", "export", "evaluate", "render"];

Deno.test("the tiny profile runs all seven stages, reproducibly, and re-runs only evaluate and render for eval.n_samples", async (t) => {
  const root = await projectCopy();
  const first = await facegan(root, ["run", ...TINY]);
  assert.equal(first.code, 0, first.stderr);
  for (const stage of STAGES) assert.match(first.stderr, new RegExp(`✓ ${stage}\\s+ran in`));
  const lock = await readLock(root);
  assert.deepEqual(Object.keys(lock.stages).sort(), [...STAGES].sort());
  const metrics = lock.stages.evaluate.metrics;
  for (const name of ["swd_mean", "fd_face", "kid_face", "face_detection_rate"]) {
    assert.equal(typeof metrics.values[name], "number", name);
    assert.equal(typeof metrics.floor[name], "number", name);
  }
  // Every metric and its floor are computed at the same sample sizes: N generated vs N real, and N
  // other real vs the same N real (N = eval.n_samples; the held-out split holds at least 2N).
  const full = JSON.parse(await Deno.readTextFile(join(root, "outputs", "latest", "evaluate", "metrics.json")));
  const n = lock.stages.evaluate.params["eval.n_samples"];
  assert.deepEqual([full.n.generated, full.n.real, full.n.floor], [n, n, [n, n]]);
  assert.ok(full.n.held_out >= 2 * n);
  assert.deepEqual(full.floor_n, Object.fromEntries(Object.keys(metrics.values).map((name) => [name, n])));
  // The per-epoch SWD (N = the sample grid) has its own real-vs-real floor at that N.
  assert.equal(full.per_epoch.length, lock.stages.train.params["train.epochs"]);
  assert.equal(full.per_epoch[0].n, Math.min(lock.stages.train.params["train.sample_grid"] ** 2, n));
  assert.equal(full.per_epoch_floor.n, full.per_epoch[0].n);
  assert.ok(full.per_epoch_floor.swd_mean > 0);
  assert.equal(lock.stages.train.environment.backend, "wasm");
  assert.equal(lock.stages.train.environment.threads, 1);

  await t.step("verify reports every stage reproducible (metrics byte-identical)", async () => {
    const verify = await facegan(root, ["verify", ...TINY]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    for (const stage of STAGES) assert.match(verify.stdout, new RegExp(`${stage}\\s+reproducible`));
  });

  await t.step("re-running train and below reproduces them and leaves the lock byte-identical", async () => {
    const before = await Deno.readTextFile(join(root, "pipeline.lock.json"));
    const again = await facegan(root, ["run", ...TINY, "--from", "train"]);
    assert.equal(again.code, 0, again.stderr);
    const ran = [...again.stderr.matchAll(/✓ (\w+)\s+ran in/g)].map((m) => m[1]);
    assert.deepEqual(ran, ["train", "export", "evaluate", "render"]);
    assert.equal(await Deno.readTextFile(join(root, "pipeline.lock.json")), before);
    // The wall times live in the run summary and the cache entry, and status shows them.
    const summary = JSON.parse(await Deno.readTextFile(join(root, "outputs", "latest", "summary.json")));
    assert.equal(summary.stages.train.action, "ran");
    assert.equal(typeof summary.stages.train.wall_s, "number");
    assert.equal(summary.stages.crop.action, "cached");
    const status = await facegan(root, ["status", ...TINY]);
    assert.match(status.stdout, /train\s+fresh\s+\w+\s+made in [\d.]+s/);
  });

  await t.step("editing pipeline/commands/compare.ts leaves render cached (render does not import it)", async () => {
    await Deno.writeTextFile(join(root, "pipeline", "commands", "compare.ts"), "\n// an edit\n", { append: true });
    const status = await facegan(root, ["status", ...TINY]);
    assert.equal(status.code, 0, status.stderr);
    for (const stage of STAGES) assert.match(status.stdout, new RegExp(`${stage}\\s+fresh`));
  });

  await t.step("eval.n_samples over half the held-out split is one line naming the param and the fix", async () => {
    const held = full.n.held_out;
    const tooMany = await facegan(root, ["run", ...TINY, "--set", `eval.n_samples=${Math.floor(held / 2) + 1}`]);
    assert.equal(tooMany.code, 2, tooMany.stderr);
    assert.match(
      tooMany.stderr,
      new RegExp(
        `eval\\.n_samples \\d+ needs \\d+ held-out images .* holds ${held}: lower eval\\.n_samples to ${
          Math.floor(held / 2)
        } or raise data\\.eval_fraction`,
      ),
    );
    assert.doesNotMatch(tooMany.stderr, /\n\s+at /);
  });

  await t.step("changing eval.n_samples re-runs only evaluate and render", async () => {
    const status = await facegan(root, ["status", ...TINY, "--set", "eval.n_samples=16"]);
    for (const stage of STAGES.slice(0, STAGES.indexOf("evaluate"))) {
      assert.match(status.stdout, new RegExp(`${stage}\\s+fresh`));
    }
    assert.match(status.stdout, /evaluate\s+stale\s+\w+\s+param eval\.n_samples: 20 -> 16/);
    assert.match(status.stdout, /render\s+stale/);
    const rerun = await facegan(root, ["run", ...TINY, "--set", "eval.n_samples=16"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    const ran = [...rerun.stderr.matchAll(/✓ (\w+)\s+ran in/g)].map((m) => m[1]);
    assert.deepEqual(ran, ["evaluate", "render"]);
  });

  const browser = await findChromium();
  await t.step({
    ...requires(
      "report.html renders in headless Chromium with the sample grid visible",
      !browser && "no chromium; apt-get install chromium",
    ),
    fn: async () => {
      const report = join(root, "outputs", "latest", "report.html");
      const html = await Deno.readTextFile(report);
      assert.match(html, /<img alt="generated sample grid" src="data:image\/png;base64,/);
      const profile = await scratchDir();
      const shot = join(profile, "shot.png");
      const result = await run(root, [
        "eval",
        `const p = new Deno.Command(${JSON.stringify(browser)}, { args: ${
          JSON.stringify([
            ...CHROMIUM_FLAGS,
            `--user-data-dir=${profile}`,
            `--screenshot=${shot}`,
            "--window-size=1100,900",
            `file://${report}`,
          ])
        }, stdout: "piped", stderr: "piped" }); const o = await p.output(); console.log(new TextDecoder().decode(o.stderr)); Deno.exit(o.code);`,
      ]);
      assert.equal(result.code, 0, result.stdout);
      assert.doesNotMatch(result.stdout, /Uncaught|Failed to load resource/);
      const image = await decode(await Deno.readFile(shot)) as Image;
      // The grid is the first thing under the title: count distinct colours where it sits.
      const colours = new Set<number>();
      for (let y = 110; y < 250; y++) for (let x = 40; x < 180; x++) colours.add(image.getPixelAt(x, y));
      assert.ok(colours.size > 50, `the grid area shows an image (${colours.size} colours), not a blank page`);
    },
  });
});

Deno.test("every profile in params/ names known params with values the schema accepts", async () => {
  const root = join(import.meta.dirname!, "..");
  const profiles = [...Deno.readDirSync(join(root, "params"))].map((entry) => entry.name).sort();
  assert.ok(
    ["celeba32.json", "sample-quality.json", "seeds-baseline.json", "tiny.json"].every((name) =>
      profiles.includes(name)
    ),
  );
  for (const name of profiles) {
    const { params, origin } = await loadParams(root, `params/${name}`, []);
    checkParams(schema, params, origin);
  }
});

Deno.test("a bad param value fails with one line and exit 2 before any stage runs, with --dry-run too", async () => {
  const root = await projectCopy();
  const cases: [string, RegExp][] = [
    ["train.epochs=-1", /^error: --set train\.epochs=-1: param 'train\.epochs' must be an integer >= 1, got -1$/],
    ["train.loss=foo", /^error: --set train\.loss=foo: param 'train\.loss' must be one of bce, .*, got "foo"$/],
    ["data.size=48", /^error: --set data\.size=48: param 'data\.size' must be one of 32, 64, 128, got 48$/],
  ];
  for (const [set, pattern] of cases) {
    for (const command of [["run"], ["run", "--dry-run"], ["status"]]) {
      const result = await facegan(root, [...command, ...TINY, "--set", set]);
      assert.equal(result.code, 2, `${command.join(" ")} --set ${set}`);
      assert.match(result.stderr.trim(), pattern);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    }
  }
  assert.equal(await exists(join(root, "outputs")), false, "no stage ran, nothing was written");
  const params = await facegan(root, ["params"]);
  assert.equal(params.code, 0, params.stderr);
  assert.match(params.stdout, /^train\.loss = "bce" {2}\(one of bce, lsgan, hinge, wgan-gp; read by train\)\n {4}\S/m);
  const listed = [...params.stdout.matchAll(/^(\S+) = /gm)].map((m) => m[1]);
  const defaults = JSON.parse(await Deno.readTextFile(join(root, "params.json")));
  const keys = Object.entries(defaults).flatMap(([section, values]) =>
    Object.keys(values as object).map((name) => `${section}.${name}`)
  );
  assert.deepEqual(listed, keys, "every key of params.json, in its order");
});
