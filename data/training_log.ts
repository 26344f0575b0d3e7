/**
 * What train writes about its run, besides weights: `losses.csv` (one row per step),
 * `training.json` (params, data size, per-epoch statistics) and `samples/epoch-NNNN.png` (the
 * fixed-z grid after each epoch). Written by train, read by evaluate, render and export.
 */
import { join } from "node:path";
import { writeFileAtomic } from "../pipeline/storage/fsutil.ts";
import type { FlatParams } from "../pipeline/core/params.ts";

export interface LossRow {
  step: number;
  epoch: number;
  d_real: number;
  d_fake: number;
  g: number;
}

export interface EpochStats {
  epoch: number;
  /** global step count at the end of the epoch */
  steps: number;
  d_real: number;
  d_fake: number;
  g: number;
  /** mean pairwise distance of the fixed-z samples, per pixel in [-1, 1] units */
  diversity: number;
}

export interface TrainingSummary {
  params: FlatParams;
  images: number;
  steps_per_epoch: number;
  epochs: EpochStats[];
}

const LOSSES = "losses.csv";
const COLUMNS: (keyof LossRow)[] = ["step", "epoch", "d_real", "d_fake", "g"];
const SUMMARY = "training.json";
const SAMPLES = "samples";

/** `epoch-0003`: the name of an epoch's sample grid and checkpoint. */
export const epochName = (epoch: number) => `epoch-${String(epoch).padStart(4, "0")}`;

export async function writeLosses(trainDir: string, rows: LossRow[]): Promise<void> {
  const lines = [COLUMNS.join(","), ...rows.map((row) => COLUMNS.map((column) => row[column]).join(","))];
  await writeFileAtomic(join(trainDir, LOSSES), lines.join("\n") + "\n");
}

/** The rows, by column name (the header says which column is which). */
export async function readLosses(trainDir: string): Promise<LossRow[]> {
  const [header, ...lines] = (await Deno.readTextFile(join(trainDir, LOSSES))).trim().split("\n");
  const columns = header.split(",");
  return lines.map((line) => {
    const values = line.split(",").map(Number);
    return Object.fromEntries(columns.map((column, i) => [column, values[i]])) as unknown as LossRow;
  });
}

export async function writeTrainingSummary(trainDir: string, summary: TrainingSummary): Promise<void> {
  await writeFileAtomic(join(trainDir, SUMMARY), JSON.stringify(summary, null, 1));
}

export async function readTrainingSummary(trainDir: string): Promise<TrainingSummary> {
  return JSON.parse(await Deno.readTextFile(join(trainDir, SUMMARY)));
}

/** Where the grid after `epoch` goes. */
export function epochSamplePath(trainDir: string, epoch: number): string {
  return join(trainDir, SAMPLES, `${epochName(epoch)}.png`);
}

/** The per-epoch sample grids a train stage wrote, in epoch order. */
export async function epochSampleFiles(trainDir: string): Promise<{ epoch: number; path: string }[]> {
  const found: { epoch: number; path: string }[] = [];
  for await (const entry of Deno.readDir(join(trainDir, SAMPLES))) {
    const match = entry.name.match(/^epoch-(\d+)\.png$/);
    if (match) found.push({ epoch: Number(match[1]), path: epochSamplePath(trainDir, Number(match[1])) });
  }
  return found.sort((a, b) => a.epoch - b.epoch);
}
