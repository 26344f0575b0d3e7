/** The values of `train.backend`, apart from the backends' code: the params schema lists them without loading tfjs. */
export const BACKENDS = ["auto", "tensorflow", "native", "wasm", "webgpu", "cpu"] as const;
export type BackendName = typeof BACKENDS[number];

/** The values of `eval.backend`: the CPU backends the evaluation nets are checked on; `auto` is native, else wasm. */
export const EVAL_BACKENDS = ["auto", "native", "wasm", "cpu"] as const;
export type EvalBackendName = typeof EVAL_BACKENDS[number];
