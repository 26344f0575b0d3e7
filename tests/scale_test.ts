/**
 * Large-dataset paths: a local folder referred to (not copied) and checked with one stat per
 * file, libjpeg-turbo decoding scaled in the DCT domain (against imagescript, and its fallback),
 * and memory bounded by design (work in flight), not by the dataset's size.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Image } from "imagescript";
import { decodePhoto, IMAGESCRIPT_DECODER, loadTurboJpeg } from "../data/decode.ts";
import { TurboJpeg, TurboJpegUnavailable } from "../data/turbojpeg.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import type { DecodeRequest } from "../data/decode_worker.ts";
import { renderSyntheticFace, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH } from "../data/synthetic.ts";
import { resampleArea } from "../data/resample.ts";
import {
  facegan,
  listCache,
  localSource,
  projectCopy,
  readLock,
  scratchDir,
  SHARED_CELEBA,
} from "./support/helpers.ts";
import { requires } from "./support/requires.ts";

const FULL = join(SHARED_CELEBA, "img_align_full");
const fullMissing = existsSync(FULL) ? null : `${FULL} is absent; the real CelebA sample lives in ../shared`;

function turboMissing(): string | null {
  const { turbo, why } = loadTurboJpeg();
  turbo?.close();
  return turbo ? null : why;
}
const noTurbo = turboMissing();

/**
 * A folder of synthetic JPEG faces whose times are set 10 s back: a file hashed within 100 ms of
 * its last write is hashed again next time (the racy rule, pipeline/storage/statcache.ts), which the first
 * test would otherwise see depending on how fast the machine is.
 */
async function facesFolder(count: number, subfolder = false): Promise<string> {
  const folder = await scratchDir({ prefix: "facegan-faces-" });
  for (let i = 1; i <= count; i++) await Deno.writeFile(join(folder, name(i)), await faceJpeg(i));
  if (subfolder) {
    await Deno.mkdir(join(folder, "more"));
    await Deno.writeFile(join(folder, "more", name(100)), await faceJpeg(100));
  }
  for (const path of [folder, ...(subfolder ? [join(folder, "more"), join(folder, "more", name(100))] : [])]) {
    backdate(path);
  }
  for (let i = 1; i <= count; i++) backdate(join(folder, name(i)));
  return folder;
}

/** mtime 10 s ago plus `ms` milliseconds (never a whole second: that would read as a coarse file system). */
function backdate(path: string, ms = 123): void {
  const time = new Date(Math.floor(Date.now() / 1000) * 1000 - 10_000 + ms);
  Deno.utimeSync(path, time, time);
}

const name = (i: number) => `${String(i).padStart(6, "0")}.jpg`;

async function faceJpeg(index: number): Promise<Uint8Array> {
  const image = new Image(SYNTHETIC_WIDTH, SYNTHETIC_HEIGHT);
  image.bitmap.set(renderSyntheticFace(9, index));
  return await image.encodeJPEG(90);
}

Deno.test("a local folder is referred to, not copied; an in-place edit and an added file re-run the data stages and are named", async () => {
  const folder = await facesFolder(24, true);
  const root = await projectCopy();
  const args = ["run", "--until", "shard", ...localSource(folder), "--set", "data.eval_fraction=0.25"];
  const first = await facegan(root, args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /data\.path: 25 files checked in [\d.]+s \(25 re-hashed\)/);
  const lock = await readLock(root);
  const downloaded = await listCache(root, lock.stages.download.key);
  assert.deepEqual(downloaded, ["source.json"], "no photo is copied into the cache");

  const again = await facegan(root, args);
  assert.match(again.stderr, /data\.path: 25 files checked in [\d.]+s \(0 re-hashed\)/, "unchanged: only stats");
  assert.match(again.stderr, /✓ shard\s+cached/);

  // Same size, new content, written in place (same inode).
  const edited = join(folder, name(3));
  const replacement = await faceJpeg(99);
  using file = await Deno.open(edited, { write: true, truncate: true });
  await file.write(replacement);
  file.close();
  backdate(edited, 456); // another mtime than before, and not racy
  const status = await facegan(root, ["status", ...localSource(folder)]);
  assert.match(status.stdout, /download\s+stale\s+\w+\s+data named by data\.path changed: 000003\.jpg changed/);
  const rerun = await facegan(root, args);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stderr, /▶ download .*data named by data\.path changed: 000003\.jpg changed/);
  assert.match(rerun.stderr, /✓ crop\s+ran in/);
  // status hashed the edited file and kept it in the folder's stat cache: the run re-hashes nothing.
  assert.match(rerun.stderr, /data\.path: 25 files checked in [\d.]+s \(0 re-hashed\)/);

  // Added in a subfolder: only that folder's times change.
  await Deno.writeFile(join(folder, "more", name(25)), await faceJpeg(25));
  const added = await facegan(root, args);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stderr, /▶ download .*data named by data\.path changed: \+more\/000025\.jpg/);
  const crop = JSON.parse(await Deno.readTextFile(join(root, "outputs", "latest", "crop", "crop.json")));
  assert.equal(crop.count, 26);
  const summary = JSON.parse(await Deno.readTextFile(join(root, "outputs", "latest", "summary.json")));
  assert.equal(typeof summary.stages.crop.peak_rss_mb, "number", "each stage's peak memory is recorded");
  await Deno.remove(folder, { recursive: true });
});

Deno.test("a referenced file whose bytes differ from its hash is never used: the worker stops the job", async () => {
  const folder = await facesFolder(1);
  const pool = new WorkerPool<DecodeRequest>(new URL("../data/decode_worker.ts", import.meta.url), 1);
  try {
    const file = { path: join(folder, name(1)), sha256: "0".repeat(64) };
    const responses: { ok: boolean; fatal?: boolean; error?: string }[] = [];
    await orderedMap(
      pool,
      [file],
      (file) => Promise.resolve({ request: { file, box: null, sizes: [8], turbo: false } }),
      (response) => Promise.resolve(void responses.push(response)),
    );
    assert.equal(responses[0].ok, false);
    assert.equal(responses[0].fatal, true);
    assert.match(responses[0].error!, /000001\.jpg changed after the pipeline hashed it/);
  } finally {
    pool.close();
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test({
  ...requires(
    "libjpeg-turbo decodes the real full-size sample close to imagescript, and scales in the DCT domain",
    noTurbo ?? fullMissing,
  ),
  fn: async () => {
    const turbo = loadTurboJpeg().turbo!;
    try {
      assert.match(turbo.version, /^libjpeg-turbo \d+\.\d+\.\d+/);
      let differences = 0, total = 0, unequal = 0;
      for (const file of ["000001.jpg", "000002.jpg", "000005.jpg"]) {
        const bytes = await Deno.readFile(join(FULL, file));
        const ours = await decodePhoto(bytes, turbo);
        const theirs = await decodePhoto(bytes);
        assert.deepEqual([ours.width, ours.height, ours.scale], [178, 218, 1]);
        assert.equal(ours.pixels.length, theirs.pixels.length);
        for (let i = 0; i < ours.pixels.length; i++) {
          const d = Math.abs(ours.pixels[i] - theirs.pixels[i]);
          differences += d;
          if (d) unequal++;
        }
        total += ours.pixels.length;

        // The face box to 32 px: decoded at 1/2 (the 54 px box still >= 32) and at full size.
        const need = { width: 32, height: 32, fractionX: 108 / 178, fractionY: 108 / 218 };
        const half = turbo.decode(bytes, need);
        assert.deepEqual([half.width, half.height, half.scale], [89, 109, 1 / 2]);
        assert.deepEqual([turbo.decode(bytes, { ...need, width: 64, height: 64 }).width], [178], "64 px: full size");
        const whole = turbo.decode(bytes, { width: 20, height: 20, fractionX: 1, fractionY: 1 });
        assert.deepEqual([whole.width, whole.height, whole.scale], [23, 28, 1 / 8], "ceil(178/8) x ceil(218/8)");
        const fromHalf = resampleArea(half.pixels, 89, 109, 3, { x: 16, y: 38, width: 54, height: 54 }, 32, 32);
        const fromFull = resampleArea(ours.pixels, 178, 218, 3, { x: 32, y: 76, width: 108, height: 108 }, 32, 32);
        let mad = 0;
        for (let i = 0; i < fromFull.length; i++) mad += Math.abs(fromHalf[i] - fromFull[i]);
        mad /= fromFull.length;
        assert.ok(mad < 2, `${file}: 32 px crop from the 1/2-scale decode within 2/255 of the full decode (${mad})`);
      }
      const mad = differences / total;
      assert.ok(unequal > 0, "two different decoders: some pixels differ");
      assert.ok(mad < 2, `mean absolute difference to imagescript ${mad.toFixed(3)} should be under 2/255`);
      assert.throws(() => turbo.decode(new Uint8Array([0xff, 0xd8, 0xff, 1, 2, 3])), /.+/, "garbage throws");
    } finally {
      turbo.close();
    }
  },
});

Deno.test("a bad FACEGAN_TURBOJPEG_PATH falls back to imagescript with one line, and the lock names the decoder", async () => {
  assert.throws(() => new TurboJpeg("/nonexistent/libturbojpeg.so.0"), (error: Error) => {
    assert.ok(error instanceof TurboJpegUnavailable);
    assert.match(error.message, /^\/nonexistent\/libturbojpeg\.so\.0 could not be loaded \(.*\)$/);
    assert.doesNotMatch(error.message, /\n/);
    return true;
  });
  const folder = await facesFolder(6);
  const root = await projectCopy();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "run", "--until", "crop", ...localSource(folder)],
    cwd: root,
    env: { FACEGAN_TURBOJPEG_PATH: "/nonexistent/libturbojpeg.so.0" },
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.match(
    stderr,
    /crop: decoding with imagescript \(about 10x slower\): \/nonexistent\/libturbojpeg\.so\.0 could not .*deno install/,
  );
  assert.equal((await readLock(root)).stages.crop.environment.decoder, IMAGESCRIPT_DECODER);
  if (!noTurbo) {
    // The decoder is environment, not key (like the backend): force the re-run to see it recorded.
    const turbo = await facegan(root, ["run", "--until", "crop", "--from", "crop", ...localSource(folder)]);
    assert.equal(turbo.code, 0, turbo.stderr);
    assert.match((await readLock(root)).stages.crop.environment.decoder, /^libjpeg-turbo /);
  }
  await Deno.remove(folder, { recursive: true });
});

Deno.test("memory is bounded by the work in flight, not by the dataset: at most two batches per worker", async () => {
  const pool = new WorkerPool<DecodeRequest>(new URL("../data/decode_worker.ts", import.meta.url), 2);
  const bytes = await new Image(8, 8).fill(0x808080ff).encode();
  let produced = 0, consumed = 0, most = 0;
  try {
    await orderedMap(
      pool,
      Array.from({ length: 400 }, (_, i) => i),
      () => {
        produced++;
        most = Math.max(most, produced - consumed);
        const copy = bytes.slice();
        return Promise.resolve({
          request: { bytes: copy, box: null, sizes: [4], turbo: false },
          transfer: [copy.buffer as ArrayBuffer],
        });
      },
      () => Promise.resolve(void consumed++),
      8,
    );
  } finally {
    pool.close();
  }
  assert.equal(consumed, 400);
  assert.ok(most <= 2 * 2 * 8 + 8, `at most ${2 * 2 * 8 + 8} images held at once, saw ${most}`);
});
