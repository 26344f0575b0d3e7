/**
 * facegan's DAG: the one declaration of its stages and their inputs; the params each reads come
 * from the params schema's sections (params_schema.ts), so a param is declared in one place.
 * Pure data, so `status` and a no-op run load no tensor code; the engine runs each stage's
 * module (exporting `run(ctx)`) in its own process.
 */
import type { StageDecl } from "../pipeline/core/types.ts";
import { stageParams } from "./params_schema.ts";

export const dag: StageDecl[] = [
  {
    name: "download",
    description: "get the raw images: synthetic faces, an http(s) zip, or a local folder/zip",
    deps: [],
    params: stageParams.download,
    external: ["data.path"],
    module: "stages/download.ts",
    resumable: true,
  },
  {
    name: "crop",
    description: "decode every image, cut the aligned-CelebA face box, resample it to data.size (parallel workers)",
    deps: ["download"],
    params: stageParams.crop,
    module: "stages/crop.ts",
    memory: ["data.size", "data.max_images"],
  },
  {
    name: "shard",
    description: "held-out split by file, seeded shuffle, fixed-size binary shards",
    deps: ["crop"],
    params: stageParams.shard,
    module: "stages/shard.ts",
    memory: ["data.size", "data.max_images"],
  },
  {
    name: "train",
    description: "train the DCGAN; per-epoch checkpoints, losses, sample grids; resumable",
    deps: ["shard"],
    params: stageParams.train,
    module: "stages/train.ts",
    live: true,
    resumable: true,
    memory: ["train.batch_size", "data.size", "train.g_conv_dim", "train.d_conv_dim"],
  },
  {
    name: "export",
    description: "the generator as a standard TF.js GraphModel (model.json + shards) and faces.html",
    deps: ["train"],
    params: stageParams.export,
    module: "stages/export.ts",
    publish: ["faces.html"],
  },
  {
    name: "evaluate",
    description: "SWD, face-embedding Frechet distance and KID, detection rate; real-vs-real floor",
    deps: ["train", "shard"],
    params: stageParams.evaluate,
    module: "stages/evaluate.ts",
    memory: ["eval.n_samples", "data.size"],
    metrics: "metrics.json",
  },
  {
    name: "render",
    description: "sample grid, per-epoch strip, interpolation, real vs fake, plots, report.html",
    deps: ["train", "evaluate", "shard"],
    params: stageParams.render,
    module: "stages/render.ts",
    publish: ["report.html"],
    preview: "grid.png",
  },
];
