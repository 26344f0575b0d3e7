/**
 * The export stage, `deno task sample` and faces.html: the TF.js model equals the pipeline's
 * generator, re-exports are byte-identical, sampling is deterministic, the page works in Chromium.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decode, Image } from "imagescript";
import * as tf from "../models/tf.ts";
import { type DcganConfig, Generator } from "../models/dcgan.ts";
import { Rng } from "../models/rng.ts";
import { generatorGraph } from "../models/generator_graph.ts";
import { readGenerator } from "../data/generator_file.ts";
import { loadTfjsModel, tfjsModel, writeTfjsModel } from "../data/tfjs_model_file.ts";
import { exists, facegan, run, scratchDir, tinyDataCopy } from "./support/helpers.ts";
import { BrowserPage, findChromium } from "./support/chromium.ts";
import { STEP_CONFIG_32 } from "../bench/bench_config.ts";
import { requires } from "./support/requires.ts";

tf.env().set("IS_TEST", true);
await tf.setBackend("cpu");

const BASE: DcganConfig = { ...STEP_CONFIG_32.model, zSize: 16, gConvDim: 8, dConvDim: 8 };

/** A generator whose every weight and statistic is random, so each path of the graph shows. */
function randomGenerator(config: DcganConfig): Generator {
  const generator = new Generator({ ...config }, new Rng(1));
  generator.build();
  const rng = new Rng(2);
  for (const [name, variable] of generator.store.entries()) {
    const values = rng.normals(variable.size, 0.3);
    if (name.endsWith("running_var")) values.forEach((v, i) => values[i] = Math.abs(v) + 0.5);
    variable.assign(tf.tensor(values, variable.shape));
  }
  return generator;
}

/** max |exported(z) - generator(z)| over a batch of 5, the model opened by tf.loadGraphModel. */
async function exportedDifference(generator: Generator, dir: string): Promise<number> {
  const { model } = await loadTfjsModel(dir);
  const z = tf.tensor2d(new Rng(3).normals(5 * generator.config.zSize), [5, generator.config.zSize]);
  const expected = generator.sample(z);
  const actual = model.execute(z) as tf.Tensor4D;
  assert.deepEqual(actual.shape, expected.shape);
  return tf.max(tf.abs(actual.sub(expected))).dataSync()[0];
}

async function exportTo(generator: Generator): Promise<string> {
  const dir = await scratchDir();
  const graph = generatorGraph(generator);
  const metadata = {
    z_size: generator.config.zSize,
    image_size: generator.config.imageSize,
    input: graph.input,
    output: graph.output,
  };
  await writeTfjsModel(dir, await tfjsModel(graph, metadata));
  return dir;
}

async function filesOf(dir: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for await (const entry of Deno.readDir(dir)) files[entry.name] = await Deno.readFile(join(dir, entry.name));
  return files;
}

Deno.test("the exported TF.js model gives the generator's images (max abs difference <= 1e-5 on cpu)", async (t) => {
  const variants: [string, Partial<DcganConfig>][] = [
    ["the seeds' DCGAN", {}],
    ["residual, self-attention and spectral norm", { residual: true, selfAttention: true, spectralNorm: "both" }],
    ["64 px with self-attention", { imageSize: 64, selfAttention: true }],
  ];
  for (const [name, options] of variants) {
    await t.step(name, async () => {
      const generator = randomGenerator({ ...BASE, ...options });
      const dir = await exportTo(generator);
      const difference = await exportedDifference(generator, dir);
      assert.ok(difference <= 1e-5, `max abs difference ${difference}`);
      assert.deepEqual(await filesOf(await exportTo(generator)), await filesOf(dir), "re-export is byte-identical");
    });
  }
  await t.step("an option or a weight the exporter cannot express is an error, not a different model", () => {
    const unknown = randomGenerator(BASE);
    (unknown.config as unknown as Record<string, unknown>).noiseInjection = true;
    assert.throws(() => generatorGraph(unknown), /does not know the generator option 'noiseInjection'/);
    const extra = randomGenerator(BASE);
    extra.store.constant("noise/scale", [1], 0);
    assert.throws(() => generatorGraph(extra), /no place for generator weight\(s\) G\/noise\/scale/);
  });
});

const TINY = ["--params", "params/tiny.json", "--set", "train.epochs=8"];
const BROWSER = await findChromium();

Deno.test("the export stage on the tiny profile: the model, deno task sample, faces.html in Chromium", async (t) => {
  const root = await tinyDataCopy();
  const result = await facegan(root, ["run", ...TINY, "--until", "export"]);
  assert.equal(result.code, 0, result.stderr);
  const exported = join(root, "outputs", "latest", "export");

  await t.step("the model equals the trained generator and records what made it", async () => {
    const generator = await readGenerator(join(root, "outputs", "latest", "train"));
    const difference = await exportedDifference(generator, exported);
    assert.ok(difference <= 1e-5, `max abs difference ${difference}`);
    const { metadata } = await loadTfjsModel(exported);
    assert.equal(metadata.z_size, 16);
    assert.equal(metadata.image_size, 32);
    assert.equal((metadata.params as Record<string, unknown>)["train.epochs"], 8);
  });

  await t.step("verify re-exports byte-identically", async () => {
    const verify = await facegan(root, ["verify", ...TINY, "export"]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /export\s+reproducible/);
  });

  await t.step(
    "deno task sample --n 16 --seed 3 twice gives byte-identical PNGs; bad arguments: one line, exit 2",
    async () => {
      const sample = (args: string[]) => run(root, ["run", "-A", "sample.ts", ...args]);
      for (const out of ["a.png", "b.png"]) {
        const made = await sample(["--n", "16", "--seed", "3", "--grid", "--out", out]);
        assert.equal(made.code, 0, made.stderr);
      }
      const [a, b] = [await Deno.readFile(join(root, "a.png")), await Deno.readFile(join(root, "b.png"))];
      assert.deepEqual(a, b);
      const grid = await decode(a) as Image;
      assert.deepEqual([grid.width, grid.height], [4 * 33 + 1, 4 * 33 + 1], "a 4x4 grid of 32 px faces");
      const other = await sample(["--n", "16", "--seed", "4", "--grid", "--out", "c.png"]);
      assert.equal(other.code, 0, other.stderr);
      assert.notDeepEqual(await Deno.readFile(join(root, "c.png")), a, "another seed, other faces");

      for (const out of ["one/face.png", "two/face.png"]) {
        assert.equal((await sample(["--n", "16", "--seed", "3", "--out", out])).code, 0);
      }
      for (let i = 0; i < 16; i++) {
        const name = `face-${String(i).padStart(2, "0")}.png`;
        const face = await Deno.readFile(join(root, "one", name));
        assert.deepEqual(face, await Deno.readFile(join(root, "two", name)));
        assert.equal((await decode(face) as Image).width, 32);
      }
      const walk = await sample(["--interpolate", "3,4", "--n", "6", "--out", "walk.png"]);
      assert.equal(walk.code, 0, walk.stderr);
      assert.deepEqual(
        await Deno.readFile(join(root, "walk-0.png")),
        await Deno.readFile(join(root, "one", "face-00.png")),
      );

      for (
        const args of [
          ["--n", "zero"],
          ["--seed", "-1"],
          ["--bogus"],
          ["--interpolate", "1"],
          ["--out", "faces.jpg"],
          ["--model", join(root, "nowhere")],
        ]
      ) {
        const bad = await sample(args);
        assert.equal(bad.code, 2, args.join(" "));
        assert.equal(bad.stderr.trim().split("\n").length, 1, `one line for ${args.join(" ")}: ${bad.stderr}`);
        assert.match(bad.stderr, /^error: /, `D11: sample's errors start with 'error:' (${args.join(" ")})`);
      }
    },
  );

  await t.step("D5: sample --model checks model.json's metadata against its graph: one line, exit 2", async () => {
    const cases: [Record<string, number>, RegExp][] = [
      [{ z_size: 1e9 }, /its metadata says z_size 1000000000, its graph takes z of 16\)$/],
      [{ z_size: 17 }, /its metadata says z_size 17, its graph takes z of 16\)$/],
      [{ image_size: 60000 }, /its metadata says image_size 60000, its graph makes images of shape \[32, 32, 3\]\)$/],
      [{ image_size: 64 }, /its metadata says image_size 64, its graph makes images of shape \[32, 32, 3\]\)$/],
    ];
    for (const [change, message] of cases) {
      const model = await scratchDir();
      for (const entry of Deno.readDirSync(exported)) {
        await Deno.copyFile(join(exported, entry.name), join(model, entry.name));
      }
      const json = JSON.parse(await Deno.readTextFile(join(model, "model.json")));
      Object.assign(json.userDefinedMetadata.facegan, change);
      await Deno.writeTextFile(join(model, "model.json"), JSON.stringify(json));
      const bad = await run(root, ["run", "-A", "sample.ts", "--n", "1", "--model", model, "--out", "bad.png"]);
      assert.equal(bad.code, 2, `${JSON.stringify(change)}: ${bad.stderr}`);
      const lines = bad.stderr.trim().split("\n");
      assert.equal(lines.length, 1, bad.stderr);
      assert.match(lines[0], new RegExp(`^error: ${model}: not a facegan TF\\.js model \\(`));
      assert.match(lines[0], message);
      assert.equal(await exists(join(root, "bad.png")), false, "nothing written");
    }
  });

  await t.step({
    ...requires(
      "faces.html in headless Chromium from file:// and a static server: faces drawn, 'new faces' changes them, a seed repeats, the slider interpolates",
      BROWSER === null && "no chromium; apt-get install chromium",
    ),
    fn: async () => {
      const url = `file://${join(root, "outputs", "latest", "faces.html")}`;
      const page = await BrowserPage.open(BROWSER!, url);
      let first = "";
      const drawn = () => page.evaluate<number>("Number(document.body.dataset.drawn || 0)");
      const canvas = () => page.evaluate<string>("document.getElementById('faces').toDataURL()");
      try {
        await page.waitFor("document.body?.dataset.drawn || document.body?.dataset.error", 60_000);
        assert.equal(await page.evaluate("document.body.dataset.error ?? null"), null);
        const shot = join(root, "faces.png");
        await Deno.writeFile(shot, await page.screenshot());
        console.log(`screenshot: ${shot}`);
        const image = await decode(await Deno.readFile(shot)) as Image;
        const [left, top, width, height] = await page.evaluate<number[]>(
          "(() => { const r = document.getElementById('faces').getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()",
        );
        const colours = new Set<number>();
        for (let y = top; y < top + height; y++) {
          for (let x = left; x < left + width; x++) colours.add(image.getPixelAt(x + 1, y + 1));
        }
        assert.ok(colours.size > 500, `the canvas shows faces (${colours.size} colours), not a blank`);

        first = await canvas();
        // The first face is `deno task sample --seed 1`'s (same z; webgl's float rounding aside).
        const made = await run(root, ["run", "-A", "sample.ts", "--n", "1", "--seed", "1", "--out", "seed1.png"]);
        assert.equal(made.code, 0, made.stderr);
        const expected = await decode(await Deno.readFile(join(root, "seed1-0.png"))) as Image;
        const shown = await page.evaluate<number[]>(`(() => {
          const d = document.getElementById("faces").getContext("2d").getImageData(1, 1, 128, 128).data;
          const rgb = [];
          for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) rgb.push(...d.slice((y * 4 * 128 + x * 4) * 4, (y * 4 * 128 + x * 4) * 4 + 3));
          return rgb;
        })()`);
        let worst = 0;
        for (let i = 0; i < 32 * 32; i++) {
          for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(shown[i * 3 + c] - expected.bitmap[i * 4 + c]));
        }
        assert.ok(worst <= 2, `the page's first face is sample's seed-1 face (max difference ${worst}/255)`);
        const before = await drawn();
        await page.click("#new");
        await page.waitFor(`Number(document.body.dataset.drawn) > ${before}`, 60_000);
        assert.equal(await page.evaluate("document.getElementById('seed').value"), "2");
        assert.notEqual(await canvas(), first, "'new faces' changed the canvas");

        const again = await drawn();
        await page.evaluate(
          "(() => { const s = document.getElementById('seed'); s.value = '1'; s.dispatchEvent(new Event('change')); })()",
        );
        await page.waitFor(`Number(document.body.dataset.drawn) > ${again}`, 60_000);
        assert.equal(await canvas(), first, "seed 1 again gives the same pixels");

        // The slider walks from the first face (0) to the second (100), through others.
        const cellPixels = (id: string, column: number) =>
          page.evaluate<number[]>(
            `Array.from(document.getElementById("${id}").getContext("2d").getImageData(${
              1 + column * 130
            }, 1, 128, 128).data)`,
          );
        const slide = async (value: number) => {
          const before = await drawn();
          await page.evaluate(
            `(() => { const m = document.getElementById("mix"); m.value = "${value}"; m.dispatchEvent(new Event("input")); })()`,
          );
          await page.waitFor(`Number(document.body.dataset.drawn) > ${before}`, 60_000);
          return await cellPixels("between", 0);
        };
        const [face1, face2] = [await cellPixels("faces", 0), await cellPixels("faces", 1)];
        const largest = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));
        assert.ok(largest(await slide(0), face1) <= 2, "slider at 0: the first face");
        assert.ok(largest(await slide(100), face2) <= 2, "slider at 100: the second face");
        const middle = await slide(50);
        assert.ok(largest(middle, face1) > 2 && largest(middle, face2) > 2, "slider at 50: a face between");
        assert.deepEqual(page.errors, []);
      } finally {
        await page.close();
      }

      // The same page from a static server on 127.0.0.1 (one file, no other request needed).
      const html = await Deno.readFile(join(root, "outputs", "latest", "faces.html"));
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen() {} },
        (request) =>
          new URL(request.url).pathname === "/faces.html"
            ? new Response(html, { headers: { "content-type": "text/html" } })
            : new Response("not found", { status: 404 }),
      );
      const served = await BrowserPage.open(BROWSER!, `http://127.0.0.1:${server.addr.port}/faces.html`);
      try {
        await served.waitFor("document.body?.dataset.drawn || document.body?.dataset.error", 60_000);
        assert.equal(await served.evaluate("document.body.dataset.error ?? null"), null);
        assert.equal(
          await served.evaluate("document.getElementById('faces').toDataURL()"),
          first,
          "served, seed 1 shows the same faces",
        );
      } finally {
        await served.close();
        await server.shutdown();
      }
    },
  });
});
