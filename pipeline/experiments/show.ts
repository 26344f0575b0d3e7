/**
 * The leaderboard: one row per config, the repeats of a config (records that differ only in the
 * project's seed param) grouped: every metric's n, mean and sd over the seeds beside its floor (the
 * reference the metrics file names, e.g. real vs real), best mean marked, and for each metric
 * whether the best config's lead over the runner-up exceeds the noise its seeds show (Welch's
 * t-test); as text, as JSON, and as outputs/experiments.html with the spread of each cell drawn,
 * each experiment's preview images, links to its published files and the project's figures.
 */
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { encodeBase64 } from "../ui/base64.ts";
import { formatNumber } from "../commands/compare.ts";
import { floorAtN, floorMultiple, floorRatio } from "../ui/floor.ts";
import { UserError } from "../core/errors.ts";
import { escapeHtml } from "../ui/html.ts";
import type { ParamValue } from "../core/params.ts";
import type { ExperimentFigures, ExperimentOutputs, StageDecl } from "../core/types.ts";
import type { Cache } from "../storage/cache.ts";
import type { ExperimentRecord } from "./records.ts";
import { mean, sd, welch } from "./stats.ts";

/** The test behind every verdict on noise (its level: 5% of leads within the noise called beyond it). */
export const NOISE_TEST = "Welch's t-test, two-sided, 95%";

/** One repeat's value of a metric. */
export interface SeedValue {
  experiment: string;
  /** the seed param's value (null: the project declares none) */
  seed: ParamValue | null;
  value: number;
}

export interface MetricCell {
  /** repeats with a value (one per seed) */
  n: number;
  mean: number;
  /** sample standard deviation over the repeats; null with one */
  sd: number | null;
  per_seed: SeedValue[];
  floor: number | null;
  /** mean / floor */
  x_floor: number | null;
  /** the best mean of its column */
  best: boolean;
}

export interface Row {
  /** the first repeat's name */
  name: string;
  /** every repeat's name (the records grouped into this row) */
  experiments: string[];
  /** the seed param's value of each repeat, in the order of `experiments` */
  seeds: (ParamValue | null)[];
  /** the repeats' status, or how many have each ("2 done, 1 failed") */
  status: string;
  params: Record<string, ParamValue>;
  metrics: Record<string, MetricCell>;
  /** mean wall time of a repeat */
  wall_s: number | null;
  commit: string | null;
  error: string | null;
}

/** Whether a metric's best config leads the runner-up by more than the noise its seeds show. */
export interface Verdict {
  metric: string;
  leader: string;
  runner_up: string | null;
  /** how much better the leader's mean is than the runner-up's */
  lead: number | null;
  /** false: no runner-up, or one of the two has a single seed */
  measured: boolean;
  significant: boolean | null;
  t: number | null;
  df: number | null;
  p: number | null;
  /** |t| must exceed this to be significant */
  critical: number | null;
  /** the verdict in words */
  text: string;
}

export interface Leaderboard {
  /** the param whose values are a config's repeats (null: none declared, one row per experiment) */
  seed: string | null;
  /** the test of the verdicts */
  test: string;
  /** params whose value differs between configs, or that an experiment sets (never the seed) */
  params: string[];
  /** floor_n: the sample size (per side) of the value and its floor, where the project states it */
  metrics: { name: string; better: "lower" | "higher" | null; floor: number | null; floor_n: number | null }[];
  rows: Row[];
  verdicts: Verdict[];
}

/** The one value every record agrees on, else null. */
function only<T>(values: T[]): T | null {
  return new Set(values).size === 1 ? values[0] : null;
}

export function leaderboard(records: ExperimentRecord[], sort?: string, seed?: string): Leaderboard {
  const seedKey = seed ?? null;
  const params = [...new Set(records.flatMap((record) => Object.keys(record.params)))].filter((key) =>
    key !== seedKey && (
      records.some((record) => key in record.overlay) ||
      new Set(records.map((record) => JSON.stringify(record.params[key]))).size > 1
    )
  ).sort();
  const names = [...new Set(records.flatMap((record) => Object.keys(record.metrics?.values ?? {})))];
  const metrics = names.map((name) => {
    const better = records.map((record) => record.metrics?.better?.[name]).find(Boolean) ?? null;
    const floor = only(records.flatMap((record) => record.metrics?.floor?.[name] ?? []));
    const floor_n = only(records.flatMap((record) => record.metrics?.floor_n?.[name] ?? []));
    return { name, better, floor, floor_n };
  });
  const rows = repeats(records, seedKey).map((group) => row(group, params, seedKey));
  for (const { name, better } of metrics) {
    const cells = rows.flatMap((row) => row.metrics[name] ? [row.metrics[name]] : []);
    if (!better || new Set(cells.map((cell) => cell.mean)).size < 2) continue;
    const best = better === "lower"
      ? Math.min(...cells.map((cell) => cell.mean))
      : Math.max(...cells.map((cell) => cell.mean));
    for (const cell of cells) cell.best = cell.mean === best;
  }
  if (sort) {
    const metric = metrics.find((candidate) => candidate.name === sort);
    if (!metric) {
      throw new UserError(
        `--sort ${sort}: no such metric; metrics: ${names.join(", ") || "(none recorded yet)"}`,
      );
    }
    const sign = metric.better === "higher" ? -1 : 1;
    const value = (row: Row) => row.metrics[sort]?.mean;
    rows.sort((a, b) => value(a) === undefined ? 1 : value(b) === undefined ? -1 : sign * (value(a)! - value(b)!));
  }
  const verdicts = metrics.flatMap(({ name, better }) => better ? verdict(rows, name, better) : []);
  return { seed: seedKey, test: NOISE_TEST, params, metrics, rows, verdicts };
}

/** The records grouped by every param but the seed, in the order of their first record. */
function repeats(records: ExperimentRecord[], seedKey: string | null): ExperimentRecord[][] {
  const groups = new Map<string, ExperimentRecord[]>();
  for (const record of records) {
    const config = seedKey === null ? record.name : JSON.stringify(
      Object.entries(record.params).filter(([key]) => key !== seedKey).sort(([a], [b]) => a.localeCompare(b)),
    );
    groups.set(config, [...groups.get(config) ?? [], record]);
  }
  return [...groups.values()];
}

/** A config's row: per metric one value per seed (the first record with that seed that has it). */
function row(group: ExperimentRecord[], params: string[], seedKey: string | null): Row {
  const seedOf = (record: ExperimentRecord) => seedKey === null ? null : record.params[seedKey] ?? null;
  const metrics: Record<string, MetricCell> = {};
  for (const record of group) {
    for (const [name, value] of Object.entries(record.metrics?.values ?? {})) {
      const cell = metrics[name] ??= {
        n: 0,
        mean: 0,
        sd: null,
        per_seed: [],
        floor: record.metrics?.floor?.[name] ?? null,
        x_floor: null,
        best: false,
      };
      if (cell.per_seed.some((earlier) => earlier.seed === seedOf(record) && seedKey !== null)) continue;
      cell.per_seed.push({ experiment: record.name, seed: seedOf(record), value });
    }
  }
  for (const cell of Object.values(metrics)) {
    const values = cell.per_seed.map((repeat) => repeat.value);
    Object.assign(cell, { n: values.length, mean: mean(values), sd: sd(values) });
    cell.x_floor = floorMultiple(cell.mean, cell.floor);
  }
  const statuses = new Map<string, number>();
  for (const record of group) statuses.set(record.status, (statuses.get(record.status) ?? 0) + 1);
  const walls = group.flatMap((record) => record.wall_s ?? []);
  const errors = group.filter((record) => record.error).map((record) => `${record.name}: ${record.error}`);
  return {
    name: group[0].name,
    experiments: group.map((record) => record.name),
    seeds: group.map(seedOf),
    status: statuses.size === 1 ? group[0].status : [...statuses].map(([status, n]) => `${n} ${status}`).join(", "),
    params: Object.fromEntries(params.map((key) => [key, group[0].params[key]])),
    metrics,
    wall_s: walls.length ? Math.round(mean(walls) * 100) / 100 : null,
    commit: group.find((record) => record.commit)?.commit ?? null,
    error: errors.length ? errors.join("; ") : null,
  };
}

/** The best mean of `metric` against the runner-up's: a lead beyond the noise of their seeds, or not. */
function verdict(rows: Row[], metric: string, better: "lower" | "higher"): Verdict {
  const ranked = rows.filter((row) => row.metrics[metric])
    .sort((a, b) => (better === "lower" ? 1 : -1) * (a.metrics[metric].mean - b.metrics[metric].mean));
  const [first, second] = ranked.map((row) => ({ row, cell: row.metrics[metric] }));
  const unmeasured = { t: null, df: null, p: null, critical: null, significant: null, measured: false };
  if (!second) {
    const text = `${metric}: ${first.row.name} is the only config: no runner-up to compare with`;
    return { metric, leader: first.row.name, runner_up: null, lead: null, ...unmeasured, text };
  }
  const lead = Math.abs(first.cell.mean - second.cell.mean);
  const [leader, runnerUp] = [first.row.experiments.join(","), second.row.experiments.join(",")];
  const base = { metric, leader: first.row.name, runner_up: second.row.name, lead };
  const leads = `${metric}: ${leader} (${spread(first.cell)}) ${lead === 0 ? "ties with" : "leads"} ${runnerUp} (${
    spread(second.cell)
  })${lead === 0 ? "" : ` by ${formatNumber(lead)}`}`;
  if (first.cell.n < 2 || second.cell.n < 2) {
    const text = `${leads}; noise was not measured (one seed${
      first.cell.n < 2 && second.cell.n < 2 ? " each" : ` for ${first.cell.n < 2 ? leader : runnerUp}`
    }: repeat with exp run --seeds K)`;
    return { ...base, ...unmeasured, text };
  }
  const test = welch(first.cell.per_seed.map((s) => s.value), second.cell.per_seed.map((s) => s.value));
  const { t, df, p, critical, significant } = test;
  const how = df === null
    ? "no repeat of either varied"
    : `|t| ${Math.abs(t).toFixed(2)} ${significant ? ">" : "<="} ${critical!.toFixed(2)} at df ${df.toFixed(1)}, p ${
      p.toPrecision(2)
    }`;
  const text = `${leads}: ${significant ? "larger than the noise" : "within the noise, not a clear win"} (${how})`;
  return { ...base, measured: true, significant, t: Number.isFinite(t) ? t : null, df, p, critical, text };
}

/** "12.1234 ± 0.3456 (n 3)", or the one value */
function spread(cell: MetricCell): string {
  return cell.sd === null
    ? `${formatNumber(cell.mean)}, n 1`
    : `${formatNumber(cell.mean)} ± ${formatNumber(cell.sd)}, n ${cell.n}`;
}

/** Each metric's floor with its N, as the floor row of the table and of the page shows it. */
function floorCells(board: Leaderboard): string[] {
  return board.metrics.map((m) => floorAtN(formatNumber(m.floor), m.floor_n));
}

/** A cell of the table: the mean, with its sd when the seeds measured one, and mean / floor where there is a floor. */
function cellText(cell: MetricCell): string {
  const value = cell.sd === null ? formatNumber(cell.mean) : `${formatNumber(cell.mean)} ± ${formatNumber(cell.sd)}`;
  return cell.x_floor === null ? value : `${value} (${floorRatio(cell.mean, cell.floor)})`;
}

/**
 * The table as text: a row per config, then the floor and the better direction of each metric,
 * then the verdicts on noise. Metrics come before the params that vary (as in `dvc exp show`): a
 * wide sweep pushes its params, not what judges it, off the right edge of the terminal or the page.
 */
export function formatLeaderboard(board: Leaderboard): string {
  if (!board.rows.length) return "no experiments recorded yet: `deno task exp run --set key=v1,v2`";
  const seeds = board.seed ? [board.seed] : [];
  const header = [
    "experiment",
    "status",
    "n",
    ...board.metrics.map((m) => m.name),
    "wall_s",
    ...seeds,
    ...board.params,
  ];
  const rows = board.rows.map((row) => [
    row.experiments.join(","),
    row.status,
    String(Math.max(0, ...Object.values(row.metrics).map((cell) => cell.n))),
    ...board.metrics.map((m) => {
      const cell = row.metrics[m.name];
      return cell ? `${cellText(cell)}${cell.best ? " *" : ""}` : "-";
    }),
    row.wall_s === null ? "-" : String(row.wall_s),
    ...(board.seed ? [row.seeds.map((seed) => JSON.stringify(seed)).join(",")] : []),
    ...board.params.map((key) => JSON.stringify(row.params[key]) ?? "-"),
  ]);
  const reference = (label: string, values: string[]) => [
    label,
    "",
    "",
    ...values,
    "",
    ...seeds.map(() => ""),
    ...board.params.map(() => ""),
  ];
  const floor = reference("floor", floorCells(board));
  const better = reference("better", board.metrics.map((m) => m.better ?? "-"));
  const table = [header, ...rows, ...(board.metrics.length ? [floor, better] : [])];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column].length)));
  const lines = table.map((cells) => cells.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
  lines.push(
    "* best mean of its column; n: repeats (seeds) per config, mean ± sd over them; (Nx): the mean / its floor; " +
      "floor: the metric's reference value, (N n) the sample size per side of it and of every value " +
      "(- where experiments differ)",
  );
  if (board.verdicts.length) lines.push(`the best config's lead over the runner-up (${board.test}):`);
  for (const verdict of board.verdicts) lines.push(`  ${verdict.text}`);
  for (const row of board.rows) if (row.error) lines.push(row.error);
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
  // A card per experiment (each seed of a config its own), in the order of the rows.
  const repeats = board.rows.flatMap((row) => row.experiments.map((name, i) => ({ row, name, seed: row.seeds[i] })));
  for (const { row, name, seed: seedValue } of repeats) {
    const record = records.find((candidate) => candidate.name === name)!;
    const outputs: Record<string, string> = {};
    const images: string[] = [];
    const links: string[] = [];
    for (const stage of context.dag) {
      const entry = record.stages?.[stage.name];
      if (!entry) continue;
      const dir = context.cache.outDir(entry.key);
      if (!(await isDirectory(dir))) {
        missing.push(`${record.name}: ${stage.name} is not in the cache (gc'd or made elsewhere)`);
        continue;
      }
      outputs[stage.name] = dir;
      if (stage.preview) {
        const png = await Deno.readFile(join(dir, stage.preview)).catch(() => null);
        if (png) {
          images.push(
            `<img alt="${escapeHtml(`${record.name} ${stage.preview}`)}" src="data:image/png;base64,${
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
    if (Object.keys(outputs).length) present.push({ name: record.name, outputs });
    const seed = board.seed ? [`${board.seed}=${JSON.stringify(seedValue)}`] : [];
    const params = [...board.params.map((key) => `${key}=${JSON.stringify(row.params[key])}`), ...seed].join(" ");
    const note = record.error ? `<p class="error">${escapeHtml(record.error)}</p>` : "";
    cards.push(
      `<figure><figcaption><b>${escapeHtml(record.name)}</b> ${escapeHtml(record.status)}<br><code>${
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
td svg{display:block;margin-top:2px}.verdicts li{margin:.3em 0}
.cards{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0;max-width:380px}
img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc;display:block;margin:4px 0}.error{color:#a00}
</style></head><body>
<h1>Experiments</h1>
${tableHtml(board)}
<p>Each metric: the mean ± sd over a config's seeds (n of them); under it the seeds' values as dots and the
mean ± sd as a bar, on one scale per column. Bold: best mean of its column. (Nx): the mean divided by its floor.
Floor: the metric's reference value (e.g. real vs real).</p>
<h2>Is the best better than the noise?</h2>
<p>The best config's lead over the runner-up, per metric (${escapeHtml(board.test)}, over each config's seeds):</p>
<ul class="verdicts">${board.verdicts.map((verdict) => `<li>${escapeHtml(verdict.text)}</li>`).join("\n")}</ul>
<section><h2>Samples</h2><div class="cards">${cards.join("\n")}</div></section>
${figures}
</body></html>
`;
  return { html, missing };
}

function tableHtml(board: Leaderboard): string {
  const cell = (text: string, best = false) => `<td${best ? ' class="best"' : ""}>${escapeHtml(text)}</td>`;
  const seeds = board.seed ? [board.seed] : [];
  const head = ["experiment", "status", ...board.metrics.map((m) => m.name), "wall s", ...seeds, ...board.params]
    // a long key (train.label_smoothing) may break after its dots, so a sweep over many params still fits the page
    .map((text) => `<th>${escapeHtml(text).replaceAll(".", ".<wbr>")}</th>`).join("");
  const scales = new Map(board.metrics.map((m) => [m.name, columnScale(board.rows, m.name)]));
  const rows = board.rows.map((row) =>
    `<tr>${cell(row.experiments.join(", "))}${cell(row.status)}${
      board.metrics.map((m) => {
        const value = row.metrics[m.name];
        if (!value) return cell("-");
        return `<td${value.best ? ' class="best"' : ""}>${
          escapeHtml(`${cellText(value)}${value.sd === null ? "" : ` (n ${value.n})`}`)
        }${spreadSvg(value, scales.get(m.name)!)}</td>`;
      }).join("")
    }${cell(row.wall_s === null ? "-" : String(row.wall_s))}${
      board.seed ? cell(row.seeds.map((seed) => JSON.stringify(seed)).join(", ")) : ""
    }${board.params.map((key) => cell(JSON.stringify(row.params[key]) ?? "-")).join("")}</tr>`
  );
  // the status, wall time, seeds and params columns are empty on the reference rows
  const reference = (label: string, values: string[]) =>
    `<tr class="reference">${cell(label)}<td></td>${values.map((value) => cell(value)).join("")}${
      "<td></td>".repeat(1 + seeds.length + board.params.length)
    }</tr>`;
  if (board.metrics.length) {
    rows.push(reference("floor", floorCells(board)));
    rows.push(reference("better", board.metrics.map((m) => m.better ?? "-")));
  }
  return `<div class="board"><table><tr>${head}</tr>\n${rows.join("\n")}</table></div>`;
}

/** The lowest and highest value a column's cells draw (their seeds' values and mean ± sd). */
function columnScale(rows: Row[], metric: string): [number, number] {
  const ends = rows.flatMap((row) => {
    const cell = row.metrics[metric];
    if (!cell) return [];
    const values = cell.per_seed.map((repeat) => repeat.value);
    return cell.sd === null ? values : [...values, cell.mean - cell.sd, cell.mean + cell.sd];
  });
  return [Math.min(...ends), Math.max(...ends)];
}

const SPREAD_WIDTH = 120;
const SPREAD_HEIGHT = 14;

/** A cell's spread as a small SVG: each seed's value a dot, the mean ± sd a bar with a tick at the mean. */
function spreadSvg(cell: MetricCell, [low, high]: [number, number]): string {
  const pad = 4;
  const x = (value: number) =>
    (high === low ? SPREAD_WIDTH / 2 : pad + (value - low) / (high - low) * (SPREAD_WIDTH - 2 * pad)).toFixed(1);
  const middle = SPREAD_HEIGHT / 2;
  const parts: string[] = [];
  if (cell.sd !== null) {
    const [from, to] = [x(cell.mean - cell.sd), x(cell.mean + cell.sd)];
    parts.push(`<line x1="${from}" x2="${to}" y1="${middle}" y2="${middle}" stroke="#555" stroke-width="1.5"/>`);
    for (const end of [from, to]) {
      parts.push(`<line x1="${end}" x2="${end}" y1="${middle - 4}" y2="${middle + 4}" stroke="#555"/>`);
    }
    parts.push(
      `<line x1="${x(cell.mean)}" x2="${x(cell.mean)}" y1="1" y2="${
        SPREAD_HEIGHT - 1
      }" stroke="#000" stroke-width="2"/>`,
    );
  }
  for (const repeat of cell.per_seed) {
    parts.push(
      `<circle cx="${x(repeat.value)}" cy="${middle}" r="3" fill="#1f77b4" fill-opacity="0.6"><title>${
        escapeHtml(`${repeat.experiment}: ${formatNumber(repeat.value)}`)
      }</title></circle>`,
    );
  }
  return `<svg class="spread" width="${SPREAD_WIDTH}" height="${SPREAD_HEIGHT}" role="img">${parts.join("")}</svg>`;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}
