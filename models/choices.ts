/**
 * The values a choice param of training accepts, apart from the code that uses them: the params
 * schema (stages/params_schema.ts) lists them from here without loading tfjs, and the models and
 * stages type their values with them.
 */

/** The values of `train.loss`. */
export const LOSSES = ["bce", "lsgan", "hinge", "wgan-gp"] as const;
export type LossName = typeof LOSSES[number];

/** The values of `train.spectral_norm`: which network's layers are spectrally normalised. */
export const SPECTRAL_NORMS = ["none", "d", "g", "both"] as const;
export type SpectralNorm = typeof SPECTRAL_NORMS[number];

/** The values of `train.lr_decay`: none, linear (to 0 at the last step), step (x gamma every N steps). */
export const LR_DECAYS = ["none", "linear", "step"] as const;
export type LrDecay = typeof LR_DECAYS[number];

/** The values of `train.backend`. */
export const BACKENDS = ["auto", "tensorflow", "native", "wasm", "webgpu", "cpu"] as const;
export type BackendName = typeof BACKENDS[number];

/** The values of `eval.backend`: the CPU backends the evaluation nets are checked on; `auto` is native, else wasm. */
export const EVAL_BACKENDS = ["auto", "native", "wasm", "cpu"] as const;
export type EvalBackendName = typeof EVAL_BACKENDS[number];
