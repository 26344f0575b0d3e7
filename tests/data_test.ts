/** The data stages on real JPEGs: HTTP download with resume, bad files, determinism, real CelebA. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { decode, Image } from "imagescript";
import { renderSyntheticFace, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH } from "../data/synthetic.ts";
import { readPackImages, readPackIndex } from "../data/pack.ts";
import { resampleArea } from "../data/resample.ts";
import { decodePhoto } from "../data/decode.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import type { WorkerResponse } from "../data/worker_serve.ts";
import type { DecodeRequest } from "../data/decode_worker.ts";
import { Rng } from "../models/rng.ts";
import {
  copyRealPhotos,
  exists,
  facegan,
  localSource,
  needsRealSample,
  projectCopy,
  readLock,
  REAL_SAMPLE,
  scratchDir,
  shardSharedSample,
  SHARED_CELEBA,
  urlSource,
} from "./support/helpers.ts";
import { makeZip } from "./support/zip_writer.ts";

async function syntheticJpegs(count: number, seed = 5): Promise<{ name: string; data: Uint8Array }[]> {
  const files = [];
  for (let i = 1; i <= count; i++) {
    const image = new Image(SYNTHETIC_WIDTH, SYNTHETIC_HEIGHT);
    image.bitmap.set(renderSyntheticFace(seed, i));
    files.push({ name: `faces/${String(i).padStart(6, "0")}.jpg`, data: await image.encodeJPEG(90) });
  }
  return files;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Serves `body` at /faces.zip; the first request is cut off after `cutAt` bytes. */
function flakyServer(body: Uint8Array, cutAt: number) {
  const requests: (string | null)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const range = request.headers.get("range");
    requests.push(range);
    if (requests.length === 1) {
      // Send part of the file, then break the connection.
      const stream = new ReadableStream({
        start(controller) {
          controller.enqueue(body.subarray(0, cutAt));
          controller.close(); // fewer bytes than content-length: the connection is cut
        },
      });
      return new Response(stream, { headers: { "content-length": String(body.length) } });
    }
    const start = range ? Number(range.match(/bytes=(\d+)-/)![1]) : 0;
    return new Response(body.slice(start) as Uint8Array<ArrayBuffer>, {
      status: range ? 206 : 200,
      headers: {
        "content-length": String(body.length - start),
        ...(range ? { "content-range": `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
      },
    });
  });
  return { server, requests, url: `http://127.0.0.1:${server.addr.port}/faces.zip` };
}

Deno.test("download resumes a cut HTTP transfer with Range and checks the pinned sha256", async () => {
  const files = await syntheticJpegs(40);
  const zip = makeZip([...files, { name: "faces/README.txt", data: new TextEncoder().encode("not an image") }]);
  const { server, requests, url } = flakyServer(zip, Math.floor(zip.length / 3));
  try {
    const root = await projectCopy();
    const result = await facegan(root, [
      "run",
      "--until",
      "crop",
      ...urlSource(url, sha256(zip)),
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /resuming in/);
    assert.equal(requests[0], null);
    assert.match(requests[1] ?? "", /^bytes=\d+-$/);
    assert.ok(Number(requests[1]!.slice(6, -1)) > 0, "the retry asked only for the missing bytes");
    const lock = await readLock(root);
    const downloaded = join(root, "outputs", "cache", lock.stages.download.key, "out", "source.zip");
    assert.equal(sha256(await Deno.readFile(downloaded)), sha256(zip));
    const report = JSON.parse(await Deno.readTextFile(join(root, "outputs", "latest", "crop", "crop.json")));
    assert.equal(report.count, 40);
    assert.deepEqual(report.not_images, ["faces/README.txt"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a wrong pinned sha256 fails with a clear error and keeps nothing", async () => {
  const zip = makeZip(await syntheticJpegs(5));
  const { server, url } = flakyServer(zip, zip.length); // first response complete
  try {
    const root = await projectCopy();
    const wrong = "0".repeat(64);
    const result = await facegan(root, [
      "run",
      "--until",
      "download",
      ...urlSource(url, wrong),
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(
        `sha256 of ${url.replace(/[.]/g, "\\.")} is [0-9a-f]{64}, but data.sha256 pins 0{64}; the download was deleted`,
      ),
    );
    assert.equal(await exists(join(root, "pipeline.lock.json")), false);
    const find = await new Deno.Command("find", {
      args: [join(root, "outputs", "cache"), "-name", "*.zip*"],
      stdout: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(find.stdout).trim(), "", "no zip or .part left anywhere in the cache");
  } finally {
    await server.shutdown();
  }
});

Deno.test("a zip entry that climbs out with .. is refused (zip-slip)", async () => {
  const files = await syntheticJpegs(2);
  const folder = await scratchDir();
  await Deno.writeFile(join(folder, "evil.zip"), makeZip([...files, { name: "../../evil.jpg", data: files[0].data }]));
  const root = await projectCopy();
  const result = await facegan(root, [
    "run",
    "--until",
    "crop",
    ...localSource(join(folder, "evil.zip")),
  ]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /refusing entry '\.\.\/\.\.\/evil\.jpg' \(absolute path or '\.\.': a zip-slip attempt\)/);
});

Deno.test("decodePhoto (imagescript) gives imagescript's pixels, falls back for PNG, and recovers after a corrupt JPEG", async () => {
  const [{ data: jpeg }] = await syntheticJpegs(1);
  const reference = await decode(jpeg) as Image;
  const rgbOf = (rgba: Uint8ClampedArray) =>
    Uint8Array.from({ length: (rgba.length / 4) * 3 }, (_, i) => rgba[(i / 3 | 0) * 4 + i % 3]);
  const photo = await decodePhoto(jpeg);
  assert.deepEqual([photo.width, photo.height, photo.channels], [SYNTHETIC_WIDTH, SYNTHETIC_HEIGHT, 3]);
  assert.deepEqual(photo.pixels, rgbOf(reference.bitmap), "the reused wasm decoder gives imagescript's pixels");
  const png = await decodePhoto(await reference.encode());
  assert.equal(png.channels, 4);
  assert.deepEqual(png.pixels, reference.bitmap);
  await assert.rejects(decodePhoto(jpeg.subarray(0, 200)), "a truncated JPEG throws");
  await assert.rejects(
    decodePhoto(new Uint8Array([0xff, 0xd8, 0xff, 1, 2, 3, 4, 5])),
    "garbage after the marker throws",
  );
  assert.deepEqual((await decodePhoto(jpeg)).pixels, photo.pixels, "the next decode after a failure is right");
});

Deno.test("resampleArea: whole-pixel crops copy exactly, 2x is the 2x2 mean, half-pixel shifts average", () => {
  const rng = new Rng(3);
  const [width, height] = [20, 16];
  const rgb = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(rng.next() * 256));
  const rgba = Uint8Array.from({ length: width * height * 4 }, (_, i) => i % 4 === 3 ? 255 : rgb[(i >> 2) * 3 + i % 4]);
  const at = (x: number, y: number, c: number) => rgb[(y * width + x) * 3 + c];
  const crop = resampleArea(rgb, width, height, 3, { x: 3, y: 5, width: 10, height: 8 }, 10, 8);
  assert.deepEqual(
    crop,
    Uint8Array.from({ length: 10 * 8 * 3 }, (_, i) => at(3 + ((i / 3 | 0) % 10), 5 + (i / 30 | 0), i % 3)),
  );
  assert.deepEqual(
    resampleArea(rgba, width, height, 4, { x: 3, y: 5, width: 10, height: 8 }, 10, 8),
    crop,
    "RGBA in, same RGB out",
  );
  const half = resampleArea(rgb, width, height, 3, { x: 0, y: 0, width, height }, 10, 8);
  const shifted = resampleArea(rgb, width, height, 3, { x: 2.5, y: 4, width: 10, height: 1 }, 10, 1);
  for (let x = 0; x < 10; x++) {
    for (let c = 0; c < 3; c++) {
      const [y, mean] = [3, (at(2 * x, 6, c) + at(2 * x + 1, 6, c) + at(2 * x, 7, c) + at(2 * x + 1, 7, c)) / 4];
      assert.equal(half[(y * 10 + x) * 3 + c], Math.round(mean), `2x mean at ${x},${y}`);
      assert.equal(shifted[x * 3 + c], Math.round((at(2 + x, 4, c) + at(3 + x, 4, c)) / 2), `half-pixel shift at ${x}`);
    }
  }
});

Deno.test("the worker pool keeps input order across batches, a partial last batch included", async () => {
  const pool = new WorkerPool<DecodeRequest>(new URL("../data/decode_worker.ts", import.meta.url), 2);
  const seen: number[] = [];
  try {
    const items = Array.from({ length: 37 }, (_, i) => i);
    const png = async (i: number) => await new Image(8, 8).fill(Image.rgbaToColor(i * 5, i * 5, i * 5, 255)).encode();
    await orderedMap(
      pool,
      items,
      async (i) => {
        const bytes = await png(i);
        return { request: { bytes, box: null, sizes: [1], turbo: false }, transfer: [bytes.buffer as ArrayBuffer] };
      },
      (response: WorkerResponse, i) => {
        assert.ok(response.ok, response.ok ? "" : response.error);
        assert.deepEqual([...response.pixels], [i * 5, i * 5, i * 5], `the result of item ${i}`);
        seen.push(i);
        return Promise.resolve();
      },
      4,
    );
    assert.deepEqual(seen, items);
  } finally {
    pool.close();
  }
});

Deno.test("corrupt, truncated, empty and non-image files are skipped, counted and listed", async () => {
  const folder = await scratchDir();
  for (const { name, data } of await syntheticJpegs(30)) await Deno.writeFile(join(folder, name.split("/")[1]), data);
  const good = await Deno.readFile(join(folder, "000001.jpg"));
  await Deno.writeFile(join(folder, "empty.jpg"), new Uint8Array());
  await Deno.writeFile(join(folder, "truncated.jpg"), good.subarray(0, 200));
  await Deno.writeFile(join(folder, "garbage.png"), new TextEncoder().encode("this is not a png"));
  await Deno.writeTextFile(join(folder, "notes.txt"), "hello");
  const root = await projectCopy();
  const result = await facegan(root, [
    "run",
    "--until",
    "shard",
    ...localSource(folder),
    "--set",
    "data.eval_fraction=0.3",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(await Deno.readTextFile(join(root, "outputs", "latest", "crop", "crop.json")));
  assert.equal(report.count, 30);
  assert.deepEqual(report.skipped.map((s: { name: string }) => s.name).sort(), [
    "empty.jpg",
    "garbage.png",
    "truncated.jpg",
  ]);
  for (const skipped of report.skipped) assert.ok(skipped.reason.length > 0);
  assert.deepEqual(report.not_images, ["notes.txt"]);
  // and a folder with nothing usable is a one-line error
  const empty = await scratchDir();
  await Deno.writeFile(join(empty, "broken.jpg"), new Uint8Array([1, 2, 3]));
  const none = await facegan(root, [
    "run",
    "--until",
    "crop",
    ...localSource(empty),
  ]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /error: crop: no decodable image among 1 image files/);
});

Deno.test("editing data/synthetic.ts leaves crop cached when data.source=path (crop's key holds only its worker)", async () => {
  const folder = await scratchDir();
  for (const file of await syntheticJpegs(12)) await Deno.writeFile(join(folder, file.name.slice(6)), file.data);
  const root = await projectCopy();
  const args = ["run", "--until", "crop", ...localSource(folder)];
  const first = await facegan(root, args);
  assert.equal(first.code, 0, first.stderr);
  const code = Object.keys((await readLock(root)).stages.crop.code);
  assert.ok(code.includes("data/decode_worker.ts") && !code.includes("data/synthetic.ts"), code.join(", "));
  await Deno.writeTextFile(join(root, "data", "synthetic.ts"), "\n// an edit\n", { append: true });
  const again = await facegan(root, args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /✓ download\s+ran in/, "download's key holds the synthetic drawer");
  assert.match(again.stderr, /✓ crop\s+cached/);
  await Deno.remove(folder, { recursive: true });
});

async function dataHashes(extra: string[]): Promise<string[]> {
  const root = await projectCopy();
  const result = await facegan(root, ["run", "--until", "shard", ...extra]);
  assert.equal(result.code, 0, result.stderr);
  const lock = await readLock(root);
  return ["download", "crop", "shard"].map((stage) => lock.stages[stage].output);
}

Deno.test("the data stages give identical output hashes when run twice (synthetic)", async () => {
  const args = ["--set", "data.synthetic_count=120"];
  assert.deepEqual(await dataHashes(args), await dataHashes(args));
});

Deno.test({
  ...needsRealSample("the data stages give identical output hashes when run twice (real CelebA sample)"),
  fn: async (t) => {
    const folder = await copyRealPhotos(REAL_SAMPLE!, 300);
    const args = localSource(folder);
    assert.deepEqual(await dataHashes(args), await dataHashes(args));
    await t.step("cleanup", () => Deno.remove(folder, { recursive: true }));
  },
});

Deno.test({
  ...needsRealSample("real CelebA: 8,000 photos through the three data stages, and the crop matches its crop128 twin"),
  fn: async () => {
    const root = await projectCopy();
    await shardSharedSample(root, REAL_SAMPLE!);
    const latest = join(root, "outputs", "latest");
    const crop = JSON.parse(await Deno.readTextFile(join(latest, "crop", "crop.json")));
    assert.equal(crop.count, 8000);
    assert.deepEqual(crop.skipped, []);
    const cropIndex = await readPackIndex(join(latest, "crop"));
    assert.deepEqual([cropIndex.width, cropIndex.height], [32, 32], "the 108x108 box at half size, resampled to 32 px");
    const train = await readPackIndex(join(latest, "shard"), "train");
    const held = await readPackIndex(join(latest, "shard"), "eval");
    assert.equal(train.count + held.count, 8000);
    assert.equal(train.width, 32);
    // The profile holds out enough for its evaluation: two real sets of eval.n_samples each.
    const profile = JSON.parse(await Deno.readTextFile(join(root, "params", "shared-sample.json")));
    const fraction = profile.data.eval_fraction;
    assert.ok(Math.abs(held.count / 8000 - fraction) < 0.02, `about ${fraction * 100}% held out: ${held.count}`);
    assert.ok(held.count >= 2 * profile.eval.n_samples, `${held.count} held out: two sets of eval.n_samples`);
    assert.equal(new Set([...train.names, ...held.names]).size, 8000, "the split is by file, no file on both sides");
    let min = 255, max = 0, sum = 0, n = 0;
    for await (const { pixels } of readPackImages(join(latest, "shard"), held)) {
      for (const v of pixels) {
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
        n++;
      }
    }
    assert.ok(min <= 5 && max >= 250, `full uint8 range used: ${min}..${max}`);
    assert.ok(sum / n > 60 && sum / n < 200, `plausible mean brightness ${sum / n}`);

    // Photo 000001: our crop (from the half-size photo) vs the tight crop in crop128, both to 32 px.
    let ours: Uint8Array | null = null;
    for await (const { pixels, name } of readPackImages(join(latest, "crop"), cropIndex)) {
      if (name === "000001.jpg") ours = pixels.slice();
    }
    const twin = await decode(await Deno.readFile(join(SHARED_CELEBA, "crop128", "000001.jpg"))) as Image;
    const theirs = resampleArea(twin.bitmap, 128, 128, 4, { x: 0, y: 0, width: 128, height: 128 }, 32, 32);
    let difference = 0;
    for (let i = 0; i < theirs.length; i++) difference += Math.abs(ours![i] - theirs[i]);
    const mad = difference / theirs.length;
    console.log(`crop of 000001 vs crop128/000001.jpg at 32 px: mean absolute difference ${mad.toFixed(2)} / 255`);
    assert.ok(mad < 10, `mean absolute difference ${mad} should be under 10/255`);
  },
});
