/**
 * download: the raw images, as `images/<name>` (synthetic faces, or a local folder's images) or
 * `source.zip` (an http(s) download or a local zip). Later stages read either form.
 */
import { basename, extname, join, resolve } from "node:path";
import type { StageContext } from "../pipeline/types.ts";
import { UserError } from "../pipeline/errors.ts";
import { downloadFile } from "../data/http.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import type { SyntheticRequest } from "../data/synthetic_worker.ts";
import { IMAGE_EXTENSIONS } from "../data/source.ts";

const SOURCES = ["synthetic", "url", "path"];

export async function run(ctx: StageContext): Promise<void> {
  const source = ctx.param<string>("data.source");
  if (!SOURCES.includes(source)) {
    throw new UserError(`data.source '${source}' is not one of ${SOURCES.join(", ")}`);
  }
  if (source === "synthetic") return await synthetic(ctx);
  if (source === "url") return await url(ctx);
  return await localPath(ctx);
}

async function synthetic(ctx: StageContext) {
  const count = ctx.param<number>("data.synthetic_count");
  const seed = ctx.param<number>("data.seed");
  if (!(count > 0)) throw new UserError(`data.synthetic_count must be positive, got ${count}`);
  const dir = join(ctx.outDir, "images");
  await Deno.mkdir(dir, { recursive: true });
  const pool = new WorkerPool<SyntheticRequest>(new URL("../data/synthetic_worker.ts", import.meta.url));
  let done = 0;
  try {
    const indices = Array.from({ length: count }, (_, i) => i + 1);
    await orderedMap(
      pool,
      indices,
      (index) => Promise.resolve({ request: { seed, index } }),
      async (response, index) => {
        if (!response.ok) throw new Error(response.error);
        await Deno.writeFile(join(dir, `${String(index).padStart(6, "0")}.jpg`), response.pixels);
        ctx.progress(`synthetic faces ${++done}/${count}`);
      },
    );
  } finally {
    pool.close();
  }
  ctx.log(`drew ${count} synthetic faces (seed ${seed})`);
}

async function url(ctx: StageContext) {
  const address = ctx.param<string>("data.url");
  if (!address) throw new UserError("data.source is 'url' but data.url is empty: set data.url to the zip's address");
  await downloadFile(address, join(ctx.outDir, "source.zip"), {
    sha256: ctx.param<string>("data.sha256") || undefined,
    timeoutMs: ctx.param<number>("data.timeout_s") * 1000,
    retries: ctx.param<number>("data.retries"),
    progress: ctx.progress,
    log: ctx.log,
  });
  if (!ctx.param<string>("data.sha256")) {
    ctx.log("no data.sha256 pinned: the download is not checked against a known hash");
  }
}

/** Copy the images of a local folder (or the zip itself), so the cache holds what was trained on. */
async function localPath(ctx: StageContext) {
  const value = ctx.param<string>("data.path");
  if (!value) throw new UserError("data.source is 'path' but data.path is empty: set it to a folder or zip of images");
  const path = resolve(ctx.root, value);
  const info = await Deno.stat(path);
  if (info.isFile) {
    if (extname(path).toLowerCase() !== ".zip") throw new UserError(`data.path ${value} is a file but not a .zip`);
    await Deno.copyFile(path, join(ctx.outDir, "source.zip"));
    return;
  }
  const dir = join(ctx.outDir, "images");
  await Deno.mkdir(dir, { recursive: true });
  const ignored: string[] = [];
  let copied = 0;
  const names = [];
  for await (const entry of Deno.readDir(path)) if (entry.isFile) names.push(entry.name);
  for (const name of names.sort()) {
    if (!IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) {
      ignored.push(name);
      continue;
    }
    await Deno.copyFile(join(path, name), join(dir, basename(name)));
    if (++copied % 500 === 0) ctx.progress(`copied ${copied} images`);
  }
  await Deno.writeTextFile(join(ctx.outDir, "ignored.json"), JSON.stringify({ not_images: ignored }, null, 1));
  ctx.log(
    `copied ${copied} images from ${value}${ignored.length ? `, ignored ${ignored.length} non-image files` : ""}`,
  );
}
