import { join } from "node:path";
import { projectName } from "../core/env.ts";
import { floorAtN, floorMultiple, floorRatio } from "../ui/floor.ts";
import { encodeBase64 } from "../ui/base64.ts";
import { git, showAt } from "../core/git.ts";
import { escapeHtml } from "../ui/html.ts";
import { UserError } from "../core/errors.ts";
import { writeFileAtomic } from "../storage/fsutil.ts";
import type { LockFile } from "../core/lock.ts";
import type { MetricsFile } from "../core/types.ts";
import type { Workspace } from "../storage/workspace.ts";

const WORKING_TREE = "working tree";

interface Side {
  label: string;
  lock: LockFile;
}

/**
 * Params and metrics of the locks at several git revisions (the working tree by default last),
 * with deltas against the first side and which side is better; `outputs/compare.html` shows the
 * stages' preview images side by side when their artifacts are in the cache.
 */
export async function compareCommand(workspace: Workspace, revs: string[], asJson: boolean): Promise<number> {
  const sides = await loadSides(workspace, revs);
  const params = differingParams(sides);
  const metrics = metricRows(sides);
  const report = {
    sides: sides.map((side) => side.label),
    params,
    metrics,
  };
  if (asJson) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    console.log(formatTable(report));
  }
  const page = await comparePage(workspace, sides, report);
  await writeFileAtomic(join(workspace.outputsDir, "compare.html"), page.html);
  if (!asJson) {
    for (const line of page.missing) console.log(line);
    console.log(`wrote ${workspace.relative(join(workspace.outputsDir, "compare.html"))}`);
  }
  return 0;
}

async function loadSides(workspace: Workspace, revs: string[]): Promise<Side[]> {
  const lockName = "pipeline.lock.json";
  const sides: Side[] = [];
  if (!revs.length) {
    const history = (await git(workspace.root, ["log", "--format=%h", "--", lockName]))?.trim().split("\n")
      .filter(Boolean) ?? [];
    const current = await Deno.readTextFile(workspace.lockPath).catch(() => null);
    if (!history.length) throw new UserError(`no commit changed ${lockName}: commit it, then compare`);
    // The last commit that changed the lock against the working tree; if the working tree is that
    // very lock, the commit before it against the working tree.
    const last = await showAt(workspace.root, history[0], lockName);
    revs = [last === current && history[1] ? history[1] : history[0]];
    if (current !== null) revs.push(WORKING_TREE);
  }
  for (const rev of revs) {
    const text = rev === WORKING_TREE
      ? await Deno.readTextFile(workspace.lockPath).catch(() => null)
      : await showAt(workspace.root, rev, lockName);
    if (text === null) throw new UserError(`no ${lockName} at revision '${rev}' (check the name with git log)`);
    try {
      sides.push({ label: rev, lock: JSON.parse(text) });
    } catch {
      throw new UserError(`${lockName} at revision '${rev}' is not valid JSON`);
    }
  }
  if (sides.length < 2) {
    sides.push({ label: WORKING_TREE, lock: JSON.parse(await Deno.readTextFile(workspace.lockPath)) });
  }
  return sides;
}

function allParams(lock: LockFile): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const stage of Object.values(lock.stages)) Object.assign(params, stage.params);
  return params;
}

function differingParams(sides: Side[]): Record<string, unknown[]> {
  const perSide = sides.map((side) => allParams(side.lock));
  const keys = [...new Set(perSide.flatMap((params) => Object.keys(params)))].sort();
  const rows: Record<string, unknown[]> = {};
  for (const key of keys) {
    const values = perSide.map((params) => params[key]);
    if (new Set(values.map((value) => JSON.stringify(value))).size > 1) rows[key] = values;
  }
  return rows;
}

interface MetricRow {
  values: (number | null)[];
  /** each side minus the first */
  deltas: (number | null)[];
  floor: (number | null)[];
  /** each side's sample size (per side of the comparison) of its value and floor */
  floor_n: (number | null)[];
  /** each side's value / its floor */
  x_floor: (number | null)[];
  better: "lower" | "higher" | null;
  /** label of the best side, when the direction is known */
  best: string | null;
}

function metricsOf(lock: LockFile): MetricsFile[] {
  return Object.values(lock.stages).map((stage) => stage.metrics as MetricsFile | undefined)
    .filter((metrics): metrics is MetricsFile => Boolean(metrics?.values));
}

function metricRows(sides: Side[]): Record<string, MetricRow> {
  const perSide = sides.map((side) => metricsOf(side.lock));
  const names = [...new Set(perSide.flatMap((files) => files.flatMap((file) => Object.keys(file.values))))].sort();
  const rows: Record<string, MetricRow> = {};
  for (const name of names) {
    const find = (files: MetricsFile[]) => files.find((file) => name in file.values);
    const values = perSide.map((files) => find(files)?.values[name] ?? null);
    const floor = perSide.map((files) => find(files)?.floor?.[name] ?? null);
    const floor_n = perSide.map((files) => find(files)?.floor_n?.[name] ?? null);
    const better = perSide.map((files) => find(files)?.better?.[name]).find(Boolean) ?? null;
    const first = values[0];
    const deltas = values.map((value) => value === null || first === null ? null : value - first);
    let best: string | null = null;
    const known = values.map((value, i) => [value, i] as const).filter(([value]) => value !== null);
    if (better && known.length > 1 && new Set(known.map(([value]) => value)).size > 1) {
      const pick = known.reduce((a, b) => (better === "lower" ? b[0]! < a[0]! : b[0]! > a[0]!) ? b : a);
      best = sides[pick[1]].label;
    }
    const multiples = values.map((value, i) => floorMultiple(value, floor[i]));
    rows[name] = { values, deltas, floor, floor_n, x_floor: multiples, better, best };
  }
  return rows;
}

/** The floor the table prints, the first side's that has one, with the N it was computed at. */
function floorText(row: MetricRow): string {
  const side = row.floor.findIndex((value) => value !== null);
  return side < 0 ? "-" : floorAtN(formatNumber(row.floor[side]), row.floor_n[side]);
}

export function formatNumber(value: number | null, signed = false): string {
  if (value === null) return "-";
  const text = Math.abs(value) >= 1000 || (Math.abs(value) < 0.001 && value !== 0)
    ? value.toExponential(3)
    : value.toFixed(4);
  return signed && value > 0 ? `+${text}` : text;
}

function formatTable(
  report: { sides: string[]; params: Record<string, unknown[]>; metrics: Record<string, MetricRow> },
) {
  const lines: string[] = [];
  const header = (first: string) => [first, ...report.sides];
  const table = (rows: string[][]) => {
    const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
    for (const row of rows) lines.push(row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
  };
  lines.push("params that differ:");
  const paramRows = Object.entries(report.params).map((
    [key, values],
  ) => [key, ...values.map((v) => JSON.stringify(v))]);
  if (paramRows.length) table([header("param"), ...paramRows]);
  else lines.push("  (none)");
  lines.push("", "metrics (delta vs the first side; floor = real vs real; x floor = value / floor; * = better side):");
  const metricRows = Object.entries(report.metrics).map(([name, row]) => [
    `${name}${row.better ? ` (${row.better} better)` : ""}`,
    ...row.values.map((value, i) =>
      `${formatNumber(value)}${i ? ` (${formatNumber(row.deltas[i], true)})` : ""}${
        row.best === report.sides[i] ? " *" : ""
      }`
    ),
    `floor ${floorText(row)}`,
    row.values.map((value, i) => floorRatio(value, row.floor[i])).join(" / "),
  ]);
  if (metricRows.length) table([[...header("metric"), "", "x floor"], ...metricRows]);
  else lines.push("  (no metrics recorded in these locks)");
  return lines.join("\n");
}

async function comparePage(
  workspace: Workspace,
  sides: Side[],
  report: { sides: string[]; params: Record<string, unknown[]>; metrics: Record<string, MetricRow> },
) {
  const missing: string[] = [];
  const columns: string[] = [];
  for (const side of sides) {
    const images: string[] = [];
    for (const stage of workspace.dag) {
      const record = side.lock.stages[stage.name];
      if (!stage.preview || !record) continue;
      const path = join(workspace.cache.outDir(record.key), stage.preview);
      try {
        const data = encodeBase64(await Deno.readFile(path));
        images.push(
          `<figure><img src="data:image/png;base64,${data}"><figcaption>${stage.name}/${stage.preview}</figcaption></figure>`,
        );
      } catch {
        const how = side.label === WORKING_TREE
          ? "run `deno task pipeline`"
          : `check out ${side.label} and run \`deno task pipeline\``;
        missing.push(`missing: ${stage.name} artifact of ${side.label} is not in the cache (${how})`);
        images.push(`<p>${stage.name}: not in the cache (${escapeHtml(how)})</p>`);
      }
    }
    columns.push(`<div class="side"><h2>${escapeHtml(side.label)}</h2>${images.join("")}</div>`);
  }
  const html = `<!doctype html><meta charset="utf-8"><title>${projectName()} compare</title>
<style>body{font-family:sans-serif;margin:2em}.sides{display:flex;gap:2em}img{image-rendering:pixelated;max-width:100%}pre{background:#f4f4f4;padding:1em}</style>
<h1>compare: ${report.sides.map(escapeHtml).join(" vs ")}</h1>
<pre>${escapeHtml(formatTable(report))}</pre>
<div class="sides">${columns.join("")}</div>`;
  return { html, missing };
}
