/** The real eight-stage pipeline end to end on the tiny profile: report, reproducibility, invalidation. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decode, Image } from "imagescript";
import { facegan, projectCopy, readLock, run } from "./helpers.ts";
import { CHROMIUM_FLAGS, findChromium } from "./chromium.ts";

const TINY = ["--params", "params/tiny.json"];
const STAGES = ["download", "crop", "resize", "shard", "train", "export", "evaluate", "render"];

Deno.test("the tiny profile runs all eight stages, reproducibly, and re-runs only evaluate and render for eval.n_samples", async (t) => {
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
  assert.equal(lock.stages.train.environment.backend, "wasm");
  assert.equal(lock.stages.train.environment.threads, 1);

  await t.step("verify reports every stage reproducible (metrics byte-identical)", async () => {
    const verify = await facegan(root, ["verify", ...TINY]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    for (const stage of STAGES) assert.match(verify.stdout, new RegExp(`${stage}\\s+reproducible`));
  });

  await t.step("changing eval.n_samples re-runs only evaluate and render", async () => {
    const status = await facegan(root, ["status", ...TINY, "--set", "eval.n_samples=40"]);
    for (const stage of STAGES.slice(0, 6)) assert.match(status.stdout, new RegExp(`${stage}\\s+fresh`));
    assert.match(status.stdout, /evaluate\s+stale\s+\w+\s+param eval\.n_samples: 48 -> 40/);
    assert.match(status.stdout, /render\s+stale/);
    const rerun = await facegan(root, ["run", ...TINY, "--set", "eval.n_samples=40"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    const ran = [...rerun.stderr.matchAll(/✓ (\w+)\s+ran in/g)].map((m) => m[1]);
    assert.deepEqual(ran, ["evaluate", "render"]);
  });

  await t.step("report.html renders in headless Chromium with the sample grid visible", async () => {
    const browser = await findChromium();
    if (!browser) {
      console.log("skipped: no chromium (apt-get install chromium)");
      return;
    }
    const report = join(root, "outputs", "latest", "report.html");
    const html = await Deno.readTextFile(report);
    assert.match(html, /<img alt="generated sample grid" src="data:image\/png;base64,/);
    const profile = await Deno.makeTempDir();
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
  });
});
