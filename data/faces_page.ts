/**
 * faces.html: one self-contained page that generates faces in the browser with the exported model.
 * Everything is inlined (TF.js' own bundle, model.json, the weights in base64), so it works opened
 * from disk (file://, where a page may fetch nothing) and from any static server, with no CDN.
 *
 * The page draws z with the project's own seeded generator and interpolates with its own slerp
 * (their source inlined), so seed S shows the first faces of `deno task sample --seed S`.
 */
import { encodeBase64 } from "../pipeline/ui/base64.ts";
import { Rng } from "../models/rng.ts";
import { slerp } from "../models/latent.ts";
import { toUint8Images } from "../models/serialize.ts";
import type { TfjsModel } from "./tfjs_model_file.ts";

/** Faces per side of the page's grid. */
const GRID = 4;

/** Text safe inside a <script> element: "</script" can only appear inside JS strings/regexps here. */
function scriptText(source: string): string {
  return source.replaceAll("</script", "<\\/script");
}

/** The page for `model`, running TF.js from `tfjsBundle` (the text of @tensorflow/tfjs' tf.min.js). */
export function facesPage(model: TfjsModel, tfjsBundle: string): string {
  const meta = model.json.userDefinedMetadata.facegan as { z_size: number; image_size: number };
  const upscale = Math.max(1, Math.floor(128 / meta.image_size));
  const cell = meta.image_size * upscale + 2;
  // JSON may carry "<" only inside strings, where \u003c means the same.
  const modelJson = JSON.stringify(model.json).replaceAll("<", "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facegan: faces in the browser</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}
canvas{image-rendering:pixelated;border:1px solid #ccc;background:#202020}
.controls{display:flex;gap:1em;align-items:center;margin:1em 0}input[type=number]{width:8em}
</style></head><body>
<h1>facegan: faces in the browser</h1>
<p>${meta.image_size}x${meta.image_size} px faces from a z of ${meta.z_size} numbers, generated in this page by the
exported generator with TensorFlow.js (<span id="backend">starting</span> backend).
Seed S shows the first faces of <code>deno task sample --seed S</code>.</p>
<div class="controls"><button id="new">new faces</button>
<label>seed <input id="seed" type="number" min="0" step="1" value="1"></label>
<span id="status">loading the model...</span></div>
<canvas id="faces" width="${GRID * cell}" height="${GRID * cell}"></canvas>
<h2>Between two faces</h2>
<div class="controls"><span>first face</span>
<input id="mix" type="range" min="0" max="100" value="50"><span>second face</span></div>
<canvas id="between" width="${cell}" height="${cell}"></canvas>
<script>${scriptText(tfjsBundle)}</script>
<script type="application/json" id="model">${modelJson}</script>
<script>
"use strict";
${Rng.toString()}
${slerp.toString()}
${toUint8Images.toString()}
const GRID = ${GRID}, UPSCALE = ${upscale}, CELL = ${cell};
const WEIGHTS = "${encodeBase64(model.weights)}";
const $ = (id) => document.getElementById(id);
let model, zSize, size, faces;
let drawing = Promise.resolve();

/** Draw count faces for the latents z (back to back) into canvas, GRID per row. */
async function draw(canvas, z, count) {
  const images = tf.tidy(() => model.execute(tf.tensor2d(z, [count, zSize])));
  const pixels = await toUint8Images(images);
  images.dispose();
  const tile = new OffscreenCanvas(size, size);
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  for (let n = 0; n < count; n++) {
    const rgba = new ImageData(size, size);
    for (let p = 0; p < size * size; p++) {
      rgba.data.set(pixels.subarray((n * size * size + p) * 3, (n * size * size + p + 1) * 3), p * 4);
      rgba.data[p * 4 + 3] = 255;
    }
    tile.getContext("2d").putImageData(rgba, 0, 0);
    context.drawImage(tile, (n % GRID) * CELL + 1, Math.floor(n / GRID) * CELL + 1, size * UPSCALE, size * UPSCALE);
  }
}

/** Serialise redraws, and count finished ones in data-drawn (tests wait on it). */
function redraw(what) {
  drawing = drawing.then(what).then(() => {
    document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
    $("status").textContent = "seed " + $("seed").value;
  }, (error) => {
    $("status").textContent = "error: " + error.message;
    document.body.dataset.error = error.message;
  });
}

function between() {
  const t = Number($("mix").value) / 100;
  return draw($("between"), slerp(faces.subarray(0, zSize), faces.subarray(zSize, 2 * zSize), t), 1);
}

function newSeed() {
  const seed = Math.max(0, Math.floor(Number($("seed").value))) >>> 0;
  faces = new Rng(seed).normals(GRID * GRID * zSize);
  return draw($("faces"), faces, GRID * GRID).then(between);
}

async function main() {
  const json = JSON.parse($("model").textContent);
  const bytes = Uint8Array.from(atob(WEIGHTS), (c) => c.charCodeAt(0));
  await tf.ready();
  $("backend").textContent = tf.getBackend();
  model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
    weightData: bytes.buffer,
    userDefinedMetadata: json.userDefinedMetadata,
  }));
  ({ z_size: zSize, image_size: size } = model.metadata.facegan);
  $("new").onclick = () => {
    $("seed").value = Number($("seed").value) + 1;
    redraw(newSeed);
  };
  $("seed").onchange = () => redraw(newSeed);
  $("mix").oninput = () => redraw(between);
  redraw(newSeed);
}
main().catch((error) => {
  $("status").textContent = "error: " + error.message;
  document.body.dataset.error = error.message;
});
</script>
</body></html>
`;
}
