/**
 * `deno task bench scale [COUNT]`: the data path at CelebA's full scale (202,599 files; fewer with
 * COUNT, for development). Makes, under the system temp dir and never committed, a folder of
 * COUNT JPEGs of CelebA geometry: the 32 full-size photos of ../shared/celeba/img_align_full (or,
 * where that is absent, 64 synthetic faces encoded at 178x218) copied under new names, each copy
 * made unique by a trailer after the JPEG end marker, so no dedup shortcut flatters a figure.
 * Then measures, each with its goal from issue 16:
 *  - cold `--until shard` (empty cache) at 32 px, goal <= 150 s for 202,599 files; and at 64 px
 *  - a no-op `deno task pipeline --until shard`, process start included, goal <= 1.0 s
 *  - one photo rewritten in place / one photo added: the data stages re-run and the line names it
 *  - cache size after the cold 32 px run vs the folder, goal <= 1.5x; peak RSS per data stage <= 1 GiB
 */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { Image } from "imagescript";
import { renderSyntheticFace, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH } from "../data/synthetic.ts";
import { localSource, projectCopy, run, SHARED_CELEBA } from "../tests/support/helpers.ts";

export const FULL_SCALE = 202_599;
const DATA_STAGES = ["download", "crop", "shard"];
const name = (i: number) => `${String(i).padStart(6, "0")}.jpg`;

async function seedPhotos(): Promise<{ photos: Uint8Array[]; what: string }> {
  const full = join(SHARED_CELEBA, "img_align_full");
  if (existsSync(full)) {
    const names = [...Deno.readDirSync(full)].map((entry) => entry.name).filter((n) => n.endsWith(".jpg")).sort();
    return {
      photos: names.map((n) => Deno.readFileSync(join(full, n))),
      what: `${names.length} real full-size photos`,
    };
  }
  const photos = [];
  for (let i = 1; i <= 64; i++) {
    const image = new Image(SYNTHETIC_WIDTH, SYNTHETIC_HEIGHT);
    image.bitmap.set(renderSyntheticFace(1, i));
    photos.push(await image.encodeJPEG(90));
  }
  return { photos, what: "64 synthetic faces (../shared/celeba is absent)" };
}

/** A copy of `photo` whose bytes are its own: a trailer after the end marker (decoders ignore it). */
function unique(photo: Uint8Array, tag: string): Uint8Array {
  const trailer = new TextEncoder().encode(`facegan-bench ${tag}`);
  const out = new Uint8Array(photo.length + trailer.length);
  out.set(photo);
  out.set(trailer, photo.length);
  return out;
}

async function makeFolder(count: number): Promise<{ folder: string; bytes: number; what: string }> {
  const { photos, what } = await seedPhotos();
  const folder = await Deno.makeTempDir({ prefix: "facegan-scale-" });
  let bytes = 0;
  for (let i = 1; i <= count; i++) {
    const data = unique(photos[(i - 1) % photos.length], String(i));
    Deno.writeFileSync(join(folder, name(i)), data);
    bytes += data.length;
  }
  // Files changed less than 2 s before they are hashed are hashed again next time (statcache.ts).
  await new Promise((resolve) => setTimeout(resolve, 2100));
  return { folder, bytes, what };
}

function treeBytes(root: string): number {
  let sum = 0;
  for (const entry of Deno.readDirSync(root)) {
    const path = join(root, entry.name);
    if (entry.isDirectory) sum += treeBytes(path);
    else if (entry.isFile) sum += Deno.statSync(path).size;
  }
  return sum;
}

async function timed(root: string, args: string[]): Promise<{ seconds: number; stderr: string }> {
  const started = performance.now();
  const { code, stderr } = await run(root, args);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`${args.join(" ")} failed:\n${stderr}`);
  return { seconds, stderr };
}

/** Each data stage's wall time and peak RSS from the last run's summary.json, and the highest peak. */
function stageFigures(root: string): { text: string; peakRss: number } {
  const summary = JSON.parse(Deno.readTextFileSync(join(root, "outputs", "latest", "summary.json")));
  const text = DATA_STAGES.map((stage) => {
    const { wall_s, peak_rss_mb } = summary.stages[stage];
    return `${stage} ${wall_s} s / ${peak_rss_mb} MB`;
  }).join(", ");
  return { text, peakRss: Math.max(...DATA_STAGES.map((stage) => summary.stages[stage].peak_rss_mb ?? Infinity)) };
}

const gb = (bytes: number) => (bytes / 1e9).toFixed(2);
const load = () => Deno.loadavg().map((value) => value.toFixed(2)).join(" ");

export async function scale(report: (line: string) => void, count = FULL_SCALE): Promise<void> {
  const { folder, bytes, what } = await makeFolder(count);
  const data = localSource(folder);
  const untilShard = (
    size: number,
  ) => ["run", "-A", "main.ts", "run", "--until", "shard", ...data, "--set", `data.size=${size}`];
  const cores = navigator.hardwareConcurrency;
  report(`scale: ${count.toLocaleString("en-US")} files (${gb(bytes)} GB) made from ${what}; ${cores} cores`);
  try {
    const root = await projectCopy();
    const cold = await timed(root, untilShard(32));
    const cache = treeBytes(join(root, "outputs", "cache"));
    const coldFigures = stageFigures(root);
    report(
      `scale cold --until shard at 32 px: ${cold.seconds.toFixed(1)} s = ${
        (count / cold.seconds).toFixed(0)
      } images/s ` +
        `(goal <= 150 s at 202,599 files; load average ${load()}; stage wall / peak RSS: ${coldFigures.text})`,
    );
    report(
      `scale cache after the cold run: ${gb(cache)} GB = ${(cache / bytes).toFixed(2)}x the folder (goal <= 1.5x); ` +
        `peak RSS of the data stages ${coldFigures.peakRss} MB (goal <= 1024)`,
    );

    const noop: number[] = [];
    let line = "";
    for (let i = 0; i < 3; i++) {
      const result = await timed(root, ["task", "pipeline", "--until", "shard", ...data]);
      noop.push(result.seconds);
      if (i === 0) line = result.stderr.match(/data\.path: .*/)?.[0] ?? "";
    }
    // The first no-op right after the cold run is where racy files (hashed just after being written) are re-hashed.
    const first = noop[0];
    noop.sort((a, b) => a - b);
    report(
      `scale no-op \`deno task pipeline --until shard\`: first ${first.toFixed(2)} s, median ${
        noop[1].toFixed(2)
      } s of 3, process start included ` +
        `(goal <= 1.0 s; "${line.trim()}"; load average ${load()})`,
    );

    const touched = join(folder, name(Math.ceil(count / 2)));
    Deno.writeFileSync(touched, unique(Deno.readFileSync(touched), "touched"));
    const edit = await timed(root, untilShard(32));
    const named = edit.stderr.match(/▶ download .*/)?.[0] ?? "(no download line)";
    report(`scale one photo rewritten: --until shard ${edit.seconds.toFixed(1)} s; ${named.trim()}`);
    Deno.writeFileSync(join(folder, name(count + 1)), unique(Deno.readFileSync(touched), "added"));
    const add = await timed(root, untilShard(32));
    const added = add.stderr.match(/▶ download .*/)?.[0] ?? "(no download line)";
    report(`scale one photo added: --until shard ${add.seconds.toFixed(1)} s; ${added.trim()}`);
    await Deno.remove(root, { recursive: true });

    const fresh = await projectCopy();
    const cold64 = await timed(fresh, untilShard(64));
    report(
      `scale cold --until shard at 64 px: ${cold64.seconds.toFixed(1)} s = ${
        (count / cold64.seconds).toFixed(0)
      } images/s (load average ${load()}; stage wall / peak RSS: ${stageFigures(fresh).text})`,
    );
    await Deno.remove(fresh, { recursive: true });
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
}
