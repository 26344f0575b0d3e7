/**
 * download: the raw images, as `images/<name>` (synthetic faces), `source.zip` (an http(s) download
 * or a local zip) or `source.json` (a reference to a local folder). data/source.ts reads each form.
 */
import { extname, join } from "node:path";
import type { StageContext } from "../pipeline/core/types.ts";
import { UserError } from "../pipeline/core/errors.ts";
import { downloadFile } from "../data/http.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import type { SyntheticRequest } from "../data/synthetic_worker.ts";
import { writeFolderReference } from "../data/source.ts";

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
        ctx.progress({ done: ++done, total: count, unit: "faces", note: "synthetic" });
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

/**
 * A local folder is referred to, not copied: `source.json` lists every file with the size and
 * sha256 the engine hashed into this stage's key, and crop checks each file's bytes against it
 * as it reads them. A local zip is hardlinked into the cache where the filesystem allows (same
 * bytes, no second copy; an in-place edit of it shows as a damaged entry), else copied.
 */
async function localPath(ctx: StageContext) {
  const value = ctx.param<string>("data.path");
  if (!value) throw new UserError("data.source is 'path' but data.path is empty: set it to a folder or zip of images");
  const data = await ctx.external("data.path");
  const info = await Deno.stat(data.path);
  if (info.isFile) {
    if (extname(data.path).toLowerCase() !== ".zip") throw new UserError(`data.path ${value} is a file but not a .zip`);
    const target = join(ctx.outDir, "source.zip");
    try {
      await Deno.link(data.path, target);
      ctx.log(`linked ${value} into the cache (hardlink: no copy)`);
    } catch {
      await Deno.copyFile(data.path, target);
      ctx.log(`copied ${value} into the cache (no hardlink across filesystems)`);
    }
    return;
  }
  const { images, file, sha256, size } = await writeFolderReference(ctx.outDir, data);
  ctx.recordWritten(file, sha256, size);
  const others = data.files.length - images;
  ctx.log(
    `referred to ${images} images in ${value} (not copied)${others ? `, ignored ${others} non-image files` : ""}`,
  );
}
