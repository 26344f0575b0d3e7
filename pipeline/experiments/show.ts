/**
 * The leaderboard: one row per experiment with the params that vary across them and every metric
 * beside its floor (the reference the metrics file names, e.g. real vs real), best marked; as
 * text, as JSON, and as outputs/experiments.html with each experiment's preview images, links to
 * its published files and the project's figures across experiments.
 */
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { encodeBase64 } from "../base64.ts";
import { formatNumber } from "../compare.ts";
import { UserError } from "../errors.ts";
import { escapeHtml } from "../html.ts";
import type { ParamValue } from "../params.ts";
import type { ExperimentFigures, ExperimentOutputs, StageDecl } from "../types.ts";
import type { Cache } from "../cache.ts";
import type { ExperimentRecord, Status } from "./records.ts";

export interface MetricCell {
  value: number;
  floor: number | null;
  best: boolean;
}

export interface Row {
  name: string;
  status: Status;
  params: Record<string, ParamValue>;
  metrics: Record<string, MetricCell>;
  wall_s: number | null;
  commit: string | null;
  error: string | null;
}

export interface Leaderboard {
  /** params whose value differs between experiments, or that an experiment sets */
  params: string[];
  metrics: { name: string; better: "lower" | "higher" | null; floor: number | null }[];
  rows: Row[];
}

export function leaderboard(records: ExperimentRecord[], sort?: string): Leaderboard {
  const params = [...new Set(records.flatMap((record) => Object.keys(record.params)))].filter((key) =>
    records.some((record) => key in record.overlay) ||
    new Set(records.map((record) => JSON.stringify(record.params[key]))).size > 1
  ).sort();
  const names = [...new Set(records.flatMap((record) => Object.keys(record.metrics?.values ?? {})))];
  const metrics = names.map((name) => {
    const better = records.map((record) => record.metrics?.better?.[name]).find(Boolean) ?? null;
    const floors = new Set(records.flatMap((record) => record.metrics?.floor?.[name] ?? []));
    return { name, better, floor: floors.size === 1 ? [...floors][0] : null };
  });
  const rows: Row[] = records.map((record) => ({
    name: record.name,
    status: record.status,
    params: Object.fromEntries(params.map((key) => [key, record.params[key]])),
    metrics: Object.fromEntries(
      Object.entries(record.metrics?.values ?? {}).map((
        [name, value],
      ) => [name, { value, floor: record.metrics?.floor?.[name] ?? null, best: false }]),
    ),
    wall_s: record.wall_s ?? null,
    commit: record.commit ?? null,
    error: record.error ?? null,
  }));
  for (const { name, better } of metrics) {
    const cells = rows.flatMap((row) => row.metrics[name] ? [row.metrics[name]] : []);
    if (!better || new Set(cells.map((cell) => cell.value)).size < 2) continue;
    const best = better === "lower"
      ? Math.min(...cells.map((cell) => cell.value))
      : Math.max(...cells.map((cell) => cell.value));
    for (const cell of cells) cell.best = cell.value === best;
  }
  if (sort) {
    const metric = metrics.find((candidate) => candidate.name === sort);
    if (!metric) {
      throw new UserError(
        `--sort ${sort}: no such metric; metrics: ${names.join(", ") || "(none recorded yet)"}`,
      );
    }
    const sign = metric.better === "higher" ? -1 : 1;
    const value = (row: Row) => row.metrics[sort]?.value;
    rows.sort((a, b) => value(a) === undefined ? 1 : value(b) === undefined ? -1 : sign * (value(a)! - value(b)!));
  }
  return { params, metrics, rows };
}

/**
 * The table as text: a row per experiment, then the floor and the better direction of each metric.
 * Metrics come before the params that vary (as in `dvc exp show`): a wide sweep pushes its params, not
 * what judges it, off the right edge of the terminal or the page.
 */
export function formatLeaderboard(board: Leaderboard): string {
  if (!board.rows.length) return "no experiments recorded yet: `deno task exp run --set key=v1,v2`";
  const header = ["experiment", "status", ...board.metrics.map((m) => m.name), "wall_s", ...board.params];
  const rows = board.rows.map((row) => [
    row.name,
    row.status,
    ...board.metrics.map((m) => {
      const cell = row.metrics[m.name];
      return cell ? `${formatNumber(cell.value)}${cell.best ? " *" : ""}` : "-";
    }),
    row.wall_s === null ? "-" : String(row.wall_s),
    ...board.params.map((key) => JSON.stringify(row.params[key]) ?? "-"),
  ]);
  const reference = (label: string, values: string[]) => [label, "", ...values, "", ...board.params.map(() => "")];
  const floor = reference("floor", board.metrics.map((m) => formatNumber(m.floor)));
  const better = reference("better", board.metrics.map((m) => m.better ?? "-"));
  const table = [header, ...rows, ...(board.metrics.length ? [floor, better] : [])];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column].length)));
  const lines = table.map((cells) => cells.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
  lines.push("* best of its column; floor: the metric's reference value (- where experiments differ)");
  for (const row of board.rows) if (row.error) lines.push(`${row.name}: ${row.error}`);
  return lines.join("\n");
}

/** outputs/experiments.html: the table, each experiment's preview images and links, the project's figures. */
export async function experimentsPage(
  board: Leaderboard,
  records: ExperimentRecord[],
  context: { root: string; dag: StageDecl[]; cache: Cache; pageDir: string; figures?: string },
): Promise<{ html: string; missing: string[] }> {
  const missing: string[] = [];
  const cards: string[] = [];
  const present: ExperimentOutputs[] = [];
  for (const row of board.rows) {
    const record = records.find((candidate) => candidate.name === row.name)!;
    const outputs: Record<string, string> = {};
    const images: string[] = [];
    const links: string[] = [];
    for (const stage of context.dag) {
      const entry = record.stages?.[stage.name];
      if (!entry) continue;
      const dir = context.cache.outDir(entry.key);
      if (!(await isDirectory(dir))) {
        missing.push(`${row.name}: ${stage.name} is not in the cache (gc'd or made elsewhere)`);
        continue;
      }
      outputs[stage.name] = dir;
      if (stage.preview) {
        const png = await Deno.readFile(join(dir, stage.preview)).catch(() => null);
        if (png) {
          images.push(
            `<img alt="${escapeHtml(`${row.name} ${stage.preview}`)}" src="data:image/png;base64,${
              encodeBase64(png)
            }">`,
          );
        }
      }
      for (const file of stage.publish ?? []) {
        const href = relative(context.pageDir, join(dir, file)).split("\\").join("/");
        links.push(`<a href="${escapeHtml(href)}">${escapeHtml(file)}</a>`);
      }
    }
    if (Object.keys(outputs).length) present.push({ name: row.name, outputs });
    const params = board.params.map((key) => `${key}=${JSON.stringify(row.params[key])}`).join(" ");
    const note = row.error ? `<p class="error">${escapeHtml(row.error)}</p>` : "";
    cards.push(
      `<figure><figcaption><b>${escapeHtml(row.name)}</b> ${escapeHtml(row.status)}<br><code>${
        escapeHtml(params)
      }</code></figcaption>${note}${images.join("")}${links.join(" ")}</figure>`,
    );
  }
  let figures = "";
  if (context.figures && present.length) {
    const module = await import(pathToFileURL(join(context.root, context.figures)).href);
    const made = await (module.figures as ExperimentFigures)(present);
    figures = made.map((figure) => `<section><h2>${escapeHtml(figure.title)}</h2>${figure.html}</section>`).join("\n");
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>experiments</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
.board{overflow-x:auto}table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{vertical-align:bottom}td{white-space:nowrap}
td.best{font-weight:bold;background:#e6f4e6}tr.reference td{color:#666;font-style:italic}
.cards{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0;max-width:380px}
img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc;display:block;margin:4px 0}.error{color:#a00}
</style></head><body>
<h1>Experiments</h1>
${tableHtml(board)}
<p>Bold: best of its column. Floor: the metric's reference value (e.g. real vs real).</p>
<section><h2>Samples</h2><div class="cards">${cards.join("\n")}</div></section>
${figures}
</body></html>
`;
  return { html, missing };
}

function tableHtml(board: Leaderboard): string {
  const cell = (text: string, best = false) => `<td${best ? ' class="best"' : ""}>${escapeHtml(text)}</td>`;
  const head = ["experiment", "status", ...board.metrics.map((m) => m.name), "wall s", ...board.params]
    // a long key (train.label_smoothing) may break after its dots, so a sweep over many params still fits the page
    .map((text) => `<th>${escapeHtml(text).replaceAll(".", ".<wbr>")}</th>`).join("");
  const rows = board.rows.map((row) =>
    `<tr>${cell(row.name)}${cell(row.status)}${
      board.metrics.map((m) => {
        const value = row.metrics[m.name];
        return value ? cell(formatNumber(value.value), value.best) : cell("-");
      }).join("")
    }${cell(row.wall_s === null ? "-" : String(row.wall_s))}${
      board.params.map((key) => cell(JSON.stringify(row.params[key]) ?? "-")).join("")
    }</tr>`
  );
  // the status, wall time and params columns are empty on the reference rows
  const reference = (label: string, values: string[]) =>
    `<tr class="reference">${cell(label)}<td></td>${values.map((value) => cell(value)).join("")}${
      "<td></td>".repeat(1 + board.params.length)
    }</tr>`;
  if (board.metrics.length) {
    rows.push(reference("floor", board.metrics.map((m) => formatNumber(m.floor))));
    rows.push(reference("better", board.metrics.map((m) => m.better ?? "-")));
  }
  return `<div class="board"><table><tr>${head}</tr>\n${rows.join("\n")}</table></div>`;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}
