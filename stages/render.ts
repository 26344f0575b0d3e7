/**
 * render: what a person looks at. Sample grid (fixed z, nearest-neighbour upscaled), the
 * per-epoch grids as a strip, a latent interpolation strip, real vs generated side by side, loss
 * and per-epoch metric plots (PNG and SVG), and report.html: one self-contained page.
 */
import { join } from "node:path";
import { Image } from "imagescript";
import * as tf from "../models/tf.ts";
import type { MetricsFile, StageContext } from "../pipeline/core/types.ts";
import type { EvaluationMetrics } from "./evaluate.ts";
import { UserError } from "../pipeline/core/errors.ts";
import { encodeBase64 } from "../pipeline/ui/base64.ts";
import { escapeHtml } from "../pipeline/ui/html.ts";
import { floorRatio } from "../pipeline/ui/floor.ts";
import { useBackend } from "../models/backend.ts";
import { Rng } from "../models/rng.ts";
import { slerp } from "../models/latent.ts";
import { toUint8Images } from "../models/serialize.ts";
import type { Generator } from "../models/dcgan.ts";
import { readGenerator } from "../data/generator_file.ts";
import { encodePng, gridImage, readGridTiles } from "../data/image_io.ts";
import { epochSampleFiles, readLosses, readTrainingSummary } from "../data/training_log.ts";
import { readPackIndex, readPackPixels } from "../data/pack.ts";
import { lossPlot, plotPng, type PlotSpec, plotSvg, referenceLine, type Series } from "../data/plot.ts";

async function sample(generator: Generator, z: Float32Array, count: number): Promise<Uint8Array> {
  const images = tf.tidy(() => generator.sample(tf.tensor2d(z, [count, generator.config.zSize])));
  const pixels = await toUint8Images(images);
  images.dispose();
  return pixels;
}

export async function run(ctx: StageContext): Promise<void> {
  const side = ctx.param<number>("render.grid");
  const upscale = ctx.param<number>("render.upscale");
  if (!(side >= 1 && upscale >= 1)) throw new UserError("render.grid and render.upscale must be at least 1");
  tf.env().set("IS_TEST", true);
  await useBackend("cpu"); // a few hundred images: cpu is exact and start-up free
  const generator = await readGenerator(ctx.inputs.train);
  const size = generator.config.imageSize;
  const zSize = generator.config.zSize;
  const rng = new Rng(ctx.param<number>("render.seed"));
  const files: Record<string, Uint8Array> = {};
  const save = async (name: string, image: Image) => {
    files[name] = await encodePng(image);
    await Deno.writeFile(join(ctx.outDir, name), files[name]);
  };

  const count = side * side;
  await save(
    "grid.png",
    gridImage(await sample(generator, rng.normals(count * zSize), count), count, size, side, upscale),
  );

  const steps = 10;
  const rows = Math.min(side, 6);
  const path: Float32Array[] = [];
  for (let r = 0; r < rows; r++) {
    const [a, b] = [rng.normals(zSize), rng.normals(zSize)];
    for (let s = 0; s < steps; s++) path.push(slerp(a, b, s / (steps - 1)));
  }
  const pathZ = new Float32Array(path.length * zSize);
  path.forEach((z, i) => pathZ.set(z, i * zSize));
  await save(
    "interpolation.png",
    gridImage(await sample(generator, pathZ, path.length), path.length, size, steps, upscale),
  );

  const realIndex = await readPackIndex(ctx.inputs.shard, "eval");
  const shown = Math.min(realIndex.count, side * 4);
  const realPixels = (await readPackPixels(ctx.inputs.shard, realIndex)).subarray(0, shown * size * size * 3);
  const real = gridImage(realPixels, shown, size, side, upscale);
  const fake = gridImage(await sample(generator, rng.normals(shown * zSize), shown), shown, size, side, upscale);
  const pair = new Image(real.width * 2 + 16, real.height);
  pair.fill(0xffffffff);
  pair.composite(real, 0, 0);
  pair.composite(fake, real.width + 16, 0);
  await save("real_vs_fake.png", pair);

  await save("epochs.png", await epochStrip(ctx.inputs.train, size, side, upscale));
  generator.store.dispose();

  const losses = await readLosses(ctx.inputs.train);
  const lossSpec = lossPlot("training losses", losses);
  const training = await readTrainingSummary(ctx.inputs.train);
  const metrics: EvaluationMetrics = JSON.parse(
    await Deno.readTextFile(join(ctx.inputs.evaluate, "metrics.json")),
  );
  const swd: Series[] = metrics.per_epoch?.length
    ? [{
      name: "SWD / 100",
      color: 0xd62728,
      points: metrics.per_epoch.map((e) => [e.epoch, e.swd_mean / 100] as [number, number]),
    }]
    : [];
  const floor = metrics.per_epoch_floor;
  const epochPlot: PlotSpec = {
    title: "per epoch",
    xLabel: "epoch",
    yLabel: "value",
    series: [
      {
        name: "sample diversity",
        color: 0x9467bd,
        points: training.epochs.map((e) => [e.epoch, e.diversity] as [number, number]),
      },
      ...swd,
      ...(swd.length && floor
        ? [referenceLine(`SWD / 100, real vs real at N ${floor.n}`, floor.swd_mean / 100, swd)]
        : []),
    ],
  };
  const svgs: Record<string, string> = {};
  for (const [name, spec] of [["losses", lossSpec], ["epochs_plot", epochPlot]] as const) {
    svgs[name] = plotSvg(spec);
    await Deno.writeTextFile(join(ctx.outDir, `${name}.svg`), svgs[name]);
    await save(`${name}.png`, plotPng(spec));
  }
  await Deno.writeTextFile(join(ctx.outDir, "report.html"), report(ctx, files, svgs, metrics, training.params));
  ctx.log(`wrote grid, strips, plots and report.html`);
}

/** The first row of each epoch's fixed-z grid (written by train), one epoch per row. */
async function epochStrip(trainDir: string, size: number, columns: number, upscale: number): Promise<Image> {
  const rows: Uint8Array[] = [];
  for (const { path } of await epochSampleFiles(trainDir)) {
    rows.push(...(await readGridTiles(path, size)).slice(0, columns));
  }
  const all = new Uint8Array(rows.length * size * size * 3);
  rows.forEach((pixels, i) => all.set(pixels, i * size * size * 3));
  return gridImage(all, rows.length, size, columns, upscale);
}

function report(
  ctx: StageContext,
  images: Record<string, Uint8Array>,
  svgs: Record<string, string>,
  metrics: MetricsFile,
  trainParams: Record<string, unknown>,
): string {
  const img = (name: string, alt: string) =>
    `<img alt="${alt}" src="data:image/png;base64,${encodeBase64(images[name])}">`;
  const rows = Object.keys(metrics.values).map((name) =>
    `<tr><td>${name}</td><td>${metrics.values[name].toPrecision(5)}</td><td>${
      metrics.floor?.[name]?.toPrecision(5) ?? "-"
    }</td><td>${metrics.floor_n?.[name] ?? "-"}</td><td>${
      floorRatio(metrics.values[name], metrics.floor?.[name])
    }</td><td>${metrics.better?.[name] ?? ""}</td></tr>`
  ).join("\n");
  const params = Object.entries({ ...trainParams, ...ctx.params }).map(([k, v]) =>
    `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(JSON.stringify(v))}</td></tr>`
  ).join("\n");
  const inputs = Object.entries(ctx.inputHashes).map(([stage, hash]) =>
    `<tr><td>${stage}</td><td><code>${hash}</code></td></tr>`
  )
    .join("\n");
  const n = metrics.n as Record<string, unknown> | undefined;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facegan report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
section{margin:2em 0}.plots{display:flex;flex-wrap:wrap;gap:1em}
</style></head><body>
<h1>facegan report</h1>
<section><h2>Samples (fixed z)</h2>${img("grid.png", "generated sample grid")}</section>
<section><h2>Metrics</h2>
<p>Value: ${n?.generated} generated vs ${n?.real} held-out real faces (the reference). Floor: ${n?.real} other held-out real faces vs the same reference, so value and floor are computed at the same sample sizes (N per side below).</p>
<p>x floor: the value divided by its floor (1.00x: as close as two sets of real faces are to each other).</p>
<table><tr><th>metric</th><th>value</th><th>floor (real vs real)</th><th>N per side</th><th>x floor</th><th>better</th></tr>
${rows}</table></section>
<section><h2>Training</h2><div class="plots">${svgs.losses}${svgs.epochs_plot}</div></section>
<section><h2>Real (left) vs generated (right)</h2>${img("real_vs_fake.png", "real and generated faces")}</section>
<section><h2>Samples per epoch (one row per epoch)</h2>${img("epochs.png", "per-epoch samples")}</section>
<section><h2>Latent interpolation</h2>${img("interpolation.png", "latent interpolation")}</section>
<section><h2>Params</h2><table>${params}</table></section>
<section><h2>Inputs (artifact hashes, as in pipeline.lock.json)</h2><table>${inputs}</table></section>
</body></html>
`;
}
