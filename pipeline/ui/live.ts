/**
 * The live view of a run: outputs/live/index.html, a page that reloads itself and shows, a frame
 * each, the live pages of this run's stages that declare `live`. Such a stage writes its own page
 * (`StageContext.liveDir`/index.html) as it goes, wherever it runs (a cluster node sees outputs/
 * too); the engine only gives it the folder, keeps the index and names it (`status`).
 */
import { join } from "node:path";
import { escapeHtml } from "./html.ts";
import { removeIfExists, writeFileAtomic } from "../storage/fsutil.ts";
import { faultsAsLines } from "../core/faults.ts";
import { readHolder, whyDead } from "../storage/lease.ts";

/** The live view, relative to the outputs dir. */
export const LIVE_INDEX = join("live", "index.html");

/** How often the pages reload themselves, in seconds. */
const RELOAD_S = { index: 30, placeholder: 3 };

/** Live folders this process opened, newest first (one run lock holder per outputs dir: its run's). */
const opened: string[] = [];
/** The previous run's pages being cleared: once per process, awaited by every stage (experiments start at once). */
let cleared: Promise<void> | null = null;

/**
 * A fresh folder for a live stage's page, listed in the index. The first call in this process
 * clears the previous run's pages. Until the stage writes its page a placeholder stands in.
 */
export async function openLiveDir(outputsDir: string, stage: string, key: string): Promise<string> {
  const live = join(outputsDir, "live");
  const name = `${stage}-${key.slice(0, 12)}`;
  const dir = join(live, name);
  await faultsAsLines(`opening the live view of ${stage}`, dir, async () => {
    await (cleared ??= removeIfExists(live));
    await removeIfExists(dir);
    await Deno.mkdir(dir, { recursive: true });
    await writeFileAtomic(join(dir, "index.html"), placeholder(stage));
    if (!opened.includes(name)) opened.unshift(name);
    await writeFileAtomic(join(outputsDir, LIVE_INDEX), indexPage(opened));
  });
  return dir;
}

/** The live view's path while a run holds the run lock and has opened it; else null. */
export async function liveViewOfRun(outputsDir: string): Promise<string | null> {
  const holder = await readHolder(join(outputsDir, "run.lock"));
  if (!holder || whyDead(holder) !== null) return null;
  const index = await Deno.stat(join(outputsDir, LIVE_INDEX)).catch(() => null);
  // the index of an earlier run: this run has not started a live stage yet
  if (!index?.mtime || index.mtime.getTime() < Date.parse(holder.started) - 1000) return null;
  return join(outputsDir, LIVE_INDEX);
}

function placeholder(stage: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
    `<meta http-equiv="refresh" content="${RELOAD_S.placeholder}"><title>${escapeHtml(stage)}</title></head>` +
    `<body style="font-family:system-ui,sans-serif"><p>${escapeHtml(stage)} started at ${
      new Date().toISOString()
    }; its page appears here once it has written it.</p></body></html>\n`;
}

function indexPage(names: string[]): string {
  const frames = names.map((name) =>
    `<section><h2>${escapeHtml(name)}</h2><iframe src="${encodeURI(name)}/index.html" title="${
      escapeHtml(name)
    }"></iframe></section>`
  ).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${RELOAD_S.index}">
<title>live view</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em auto;max-width:1200px;color:#222}
iframe{width:100%;height:1000px;border:1px solid #ccc}h2{font-size:1em;margin:.5em 0}
</style></head><body>
<h1>Live view</h1>
<p>The run's stages that show their progress, newest first; each page reloads itself.</p>
${frames}
</body></html>
`;
}
