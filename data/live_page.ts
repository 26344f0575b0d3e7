/**
 * train's live page (`index.html` in the folder the engine gives a live stage): one
 * self-contained file, rewritten as training goes, that reloads itself and shows the latest
 * epoch's fixed-z sample grid, the loss curves so far and the per-epoch statistics. It lives
 * outside the stage's output, so it is in no key and no artifact.
 */
import { join } from "node:path";
import { encodeBase64 } from "../pipeline/ui/base64.ts";
import { escapeHtml } from "../pipeline/ui/html.ts";
import { writeFileAtomic } from "../pipeline/storage/fsutil.ts";
import { lossPlot, plotSvg } from "./plot.ts";
import type { EpochStats, LossRow } from "./training_log.ts";

export interface LiveState {
  epoch: number;
  epochs: number;
  /** steps done in all, and in all epochs */
  step: number;
  steps: number;
  /** the PNG of the last finished epoch's sample grid, once there is one */
  grid: { epoch: number; png: Uint8Array } | null;
  losses: LossRow[];
  history: EpochStats[];
}

/** How often the page reloads itself, in seconds. */
const RELOAD_S = 5;
/** The loss plot keeps at most this many points (every k-th row): the page stays small. */
const MAX_POINTS = 1500;

export async function writeLivePage(dir: string, state: LiveState): Promise<void> {
  await writeFileAtomic(join(dir, "index.html"), livePage(state));
}

function livePage(state: LiveState): string {
  const every = Math.max(1, Math.ceil(state.losses.length / MAX_POINTS));
  const rows = state.losses.filter((_, i) => i % every === 0 || i === state.losses.length - 1);
  const losses = rows.length ? plotSvg(lossPlot("training losses so far", rows)) : "<p>no losses yet</p>";
  // a line needs two epochs; the table has the first
  const diversity = state.history.length > 1
    ? plotSvg({
      title: "sample diversity per epoch",
      xLabel: "epoch",
      yLabel: "diversity",
      series: [{ name: "sample diversity", color: 0x9467bd, points: state.history.map((e) => [e.epoch, e.diversity]) }],
    })
    : "";
  const table = state.history.map((e) =>
    `<tr><td>${e.epoch}</td><td>${e.steps}</td><td>${(e.d_real + e.d_fake).toFixed(4)}</td><td>${
      e.g.toFixed(4)
    }</td><td>${e.diversity.toFixed(4)}</td></tr>`
  ).join("\n");
  const grid = state.grid
    ? `<figure><img alt="samples after epoch ${state.grid.epoch}" src="data:image/png;base64,${
      encodeBase64(state.grid.png)
    }"><figcaption>fixed-z samples after epoch ${state.grid.epoch}</figcaption></figure>`
    : "<p>the first sample grid comes at the end of epoch 1</p>";
  const percent = state.steps ? ((state.step / state.steps) * 100).toFixed(0) : "0";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${RELOAD_S}">
<title>train: epoch ${state.epoch} of ${state.epochs}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
img{image-rendering:pixelated;width:384px;border:1px solid #ccc}figure{margin:0}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.row>div{flex:1 1 380px;min-width:0}
svg{width:100%;height:auto}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
progress{width:384px}
</style></head><body>
<h1>train: epoch ${state.epoch} of ${state.epochs}</h1>
<p><progress max="${state.steps}" value="${state.step}"></progress> step ${state.step} of ${state.steps} (${percent}%)
· updated ${escapeHtml(new Date().toISOString().slice(0, 19).replace("T", " "))} UTC · reloads every ${RELOAD_S} s</p>
<div class="row">${grid}<div>${losses}</div></div>
<h2>Per epoch</h2>
<div class="row"><div>${diversity}</div>
<table><tr><th>epoch</th><th>steps</th><th>D loss</th><th>G loss</th><th>diversity</th></tr>
${table}</table></div>
</body></html>
`;
}
