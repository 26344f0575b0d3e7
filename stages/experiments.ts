/**
 * What facegan declares about its experiments (`deno task exp`): how many cores one experiment
 * keeps busy (sets the default -j), and the figures experiments.html overlays across experiments:
 * the training losses and the per-epoch SWD beside its real-vs-real floor. Importing this file
 * loads no plotting code: `figures` loads it when the page is made.
 */
import { join } from "node:path";
import type { ExperimentFigures, ExperimentsDecl } from "../pipeline/core/types.ts";
import type { EvaluationMetrics } from "./evaluate.ts";
import type { Series } from "../data/plot.ts";

export const experiments: ExperimentsDecl = {
  // The heavy stages are train and evaluate: on native oneDNN (what auto picks on a CPU machine)
  // and tfjs-node they use every core; on wasm and cpu one thread; on webgpu mostly the GPU.
  coresPerRun(params) {
    const light = ["wasm", "cpu", "webgpu"];
    const heavy = [params["train.backend"], params["eval.backend"]].some((backend) => !light.includes(String(backend)));
    return heavy ? navigator.hardwareConcurrency || 1 : 1;
  },
  figures: "stages/experiments.ts",
  // What moves between two runs of one config: the weights' init, the noise, the data order.
  seed: "train.seed",
};

const PALETTE = [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf];
/** Half way to white: D's curve beside G's in the same hue. */
const lighter = (color: number) =>
  [16, 8, 0].reduce((sum, shift) => sum + ((((color >> shift) & 0xff) + 0xff) >> 1 << shift), 0);
/** At most this many points per curve: the mean of each run of steps. */
const POINTS = 200;

export const figures: ExperimentFigures = async (runs) => {
  const { plotSvg, referenceLine } = await import("../data/plot.ts");
  const { readLosses, readTrainingSummary } = await import("../data/training_log.ts");
  const losses: Series[] = [];
  const swd: Series[] = [];
  let floor: number | undefined;
  for (const [i, run] of runs.entries()) {
    const color = PALETTE[i % PALETTE.length];
    if (run.outputs.train) {
      const rows = await readLosses(run.outputs.train);
      const perEpoch = (await readTrainingSummary(run.outputs.train)).steps_per_epoch;
      const bucket = Math.max(1, Math.ceil(rows.length / POINTS));
      const curve = (value: (row: typeof rows[number]) => number): [number, number][] => {
        const points: [number, number][] = [];
        for (let start = 0; start < rows.length; start += bucket) {
          const part = rows.slice(start, start + bucket);
          const mean = part.reduce((sum, row) => sum + value(row), 0) / part.length;
          points.push([part.at(-1)!.step / perEpoch, mean]);
        }
        return points;
      };
      losses.push({ name: `${run.name} G`, color, points: curve((row) => row.g) });
      losses.push({ name: `${run.name} D`, color: lighter(color), points: curve((row) => row.d_real + row.d_fake) });
    }
    if (run.outputs.evaluate) {
      const metrics: EvaluationMetrics = JSON.parse(
        await Deno.readTextFile(join(run.outputs.evaluate, "metrics.json")),
      );
      // The epochs' SWD is measured on the sample grid (N 64): its floor is at that N, not the final one's.
      floor ??= metrics.per_epoch_floor?.swd_mean ?? metrics.floor?.swd_mean;
      if (metrics.per_epoch) {
        swd.push({ name: run.name, color, points: metrics.per_epoch.map((e) => [e.epoch, e.swd_mean]) });
      }
    }
  }
  if (floor !== undefined && swd.length) swd.push(referenceLine("real vs real", floor, swd));
  const made = [];
  if (losses.length) {
    made.push({
      title: "Training losses (G; D = D real + D fake; mean per run of steps)",
      html: plotSvg({ title: "training losses", xLabel: "epoch", yLabel: "loss", series: losses }),
    });
  }
  if (swd.length) {
    made.push({
      title: "SWD per epoch (lower is better; grey: the real-vs-real floor)",
      html: plotSvg({ title: "SWD per epoch", xLabel: "epoch", yLabel: "SWD", series: swd }),
    });
  }
  return made;
};
