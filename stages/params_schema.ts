/**
 * facegan's params schema: every key of params.json with what it accepts and what it means, one
 * section per stage that reads it; dag.ts takes each stage's list of params from here
 * (`stageParams`). Pure data, like dag.ts: checking params loads no tensor code.
 */
import type { ParamSchema, ParamSpec } from "../pipeline/core/types.ts";
import { BACKENDS, EVAL_BACKENDS, LOSSES, LR_DECAYS, SPECTRAL_NORMS } from "../models/choices.ts";

const SEED = { type: "integer", min: 0 } as const;

const download: Record<string, ParamSpec> = {
  "data.source": {
    type: "string",
    choices: ["synthetic", "url", "path"],
    description: "where the raw images come from",
  },
  "data.synthetic_count": { type: "integer", min: 1, description: "how many synthetic faces to draw" },
  "data.seed": { ...SEED, description: "seed of the synthetic faces and of the held-out split and shuffle" },
  "data.url": { type: "string", description: "http(s) address of a zip of images (data.source=url)" },
  "data.sha256": { type: "string", description: "pinned sha256 of the zip at data.url (empty: not checked)" },
  "data.path": {
    type: "string",
    description: "local folder or zip of images (data.source=path); its content is hashed",
  },
  "data.timeout_s": {
    type: "number",
    min: 1,
    description: "seconds without a byte before a download attempt is retried",
  },
  "data.retries": { type: "integer", min: 0, description: "download attempts after the first, with backoff" },
};

const crop: Record<string, ParamSpec> = {
  "data.crop": {
    type: "string",
    choices: ["celeba", "dcgan", "none"],
    description: "face box cut from the 178x218 frame",
  },
  "data.max_images": { type: "integer", min: 0, description: "use only the first N images (0: all)" },
  "data.size": { type: "integer", choices: [32, 64, 128], description: "image size in pixels (64 and 128 add layers)" },
  "data.two_step": { type: "boolean", description: "crop resamples via twice the size, then halves" },
};

const shard: Record<string, ParamSpec> = {
  "data.eval_fraction": { type: "number", min: 0, max: 0.9, description: "share of files held out for evaluation" },
  "data.shard_size": { type: "integer", min: 1, description: "images per binary shard" },
};

const train: Record<string, ParamSpec> = {
  "train.backend": {
    type: "string",
    choices: BACKENDS,
    description:
      "tensor backend (auto: tensorflow if installed, webgpu on a real GPU, native if oneDNN loads, else wasm)",
  },
  "train.seed": { ...SEED, description: "seed of the weights, noise, data order, label flips and dropout" },
  "train.epochs": { type: "integer", min: 1, description: "passes over the training split" },
  "train.batch_size": { type: "integer", min: 1, description: "images per step" },
  "train.z_size": { type: "integer", min: 1, description: "latent size" },
  "train.g_conv_dim": { type: "integer", min: 1, description: "generator width (channels of its last layer)" },
  "train.d_conv_dim": { type: "integer", min: 1, description: "discriminator width (channels of its first layer)" },
  "train.loss": {
    type: "string",
    choices: LOSSES,
    description: "GAN loss (wgan-gp turns batch norm in D off)",
  },
  "train.lr": { type: "number", min: Number.MIN_VALUE, description: "Adam learning rate of both networks" },
  "train.lr_g": { type: "number", min: Number.MIN_VALUE, nullable: true, description: "G's rate (TTUR; null: lr)" },
  "train.lr_d": { type: "number", min: Number.MIN_VALUE, nullable: true, description: "D's rate (TTUR; null: lr)" },
  "train.beta1": { type: "number", min: 0, max: 0.999999, description: "Adam beta1" },
  "train.beta2": { type: "number", min: 0, max: 0.999999, description: "Adam beta2" },
  "train.label_smoothing": { type: "number", min: 0, max: 1, description: "one-sided real label (1: none)" },
  "train.flip_labels": { type: "number", min: 0, max: 1, description: "probability of flipping D's labels" },
  "train.spectral_norm": { type: "string", choices: SPECTRAL_NORMS, description: "spectral normalisation" },
  "train.self_attention": { type: "boolean", description: "SAGAN block at the middle resolution" },
  "train.d_dropout": { type: "number", min: 0, max: 0.99, description: "dropout in D" },
  "train.minibatch_std": { type: "boolean", description: "minibatch standard deviation layer in D" },
  "train.feature_matching": { type: "boolean", description: "G matches D's intermediate features" },
  "train.residual": { type: "boolean", description: "residual blocks in G" },
  "train.gp_weight": { type: "number", min: 0, description: "gradient penalty weight (wgan-gp)" },
  "train.lr_decay": { type: "string", choices: LR_DECAYS, description: "learning-rate schedule" },
  "train.lr_decay_every": { type: "integer", min: 1, description: "steps between decays (step schedule)" },
  "train.lr_decay_gamma": { type: "number", min: 0, max: 1, description: "factor per decay (step schedule)" },
  "train.ema": {
    type: "number",
    min: 0,
    max: 0.99999,
    description: "decay of the moving average of G's weights that samples and is exported (0: off, e.g. 0.999)",
  },
  "train.sample_grid": { type: "integer", min: 1, description: "side of the fixed-z sample grid saved per epoch" },
  "train.keep_checkpoints": { type: "integer", min: 1, description: "newest checkpoints kept" },
};

const evaluate: Record<string, ParamSpec> = {
  "eval.n_samples": { type: "integer", min: 4, description: "generated and real images per metric" },
  "eval.seed": { ...SEED, description: "seed of the latents and of the metrics' random choices" },
  "eval.kid_subsets": { type: "integer", min: 1, description: "KID subsets" },
  "eval.backend": {
    type: "string",
    choices: EVAL_BACKENDS,
    description: "tensor backend of the evaluation (auto: native if oneDNN loads, else wasm)",
  },
};

const render: Record<string, ParamSpec> = {
  "render.grid": { type: "integer", min: 1, description: "side of the rendered sample grid" },
  "render.upscale": { type: "integer", min: 1, description: "nearest-neighbour upscale of the rendered images" },
  "render.seed": { ...SEED, description: "seed of the rendered latents" },
};

export const schema: ParamSchema = { ...download, ...crop, ...shard, ...train, ...evaluate, ...render };

/** The params each stage reads (dag.ts): its section's; shard also splits and shuffles by download's data.seed. */
export const stageParams = {
  download: Object.keys(download),
  crop: Object.keys(crop),
  shard: ["data.seed", ...Object.keys(shard)],
  train: Object.keys(train),
  export: [],
  evaluate: Object.keys(evaluate),
  render: Object.keys(render),
};
