/** The values of `train.backend`, apart from the backends' code: the params schema lists them without loading tfjs. */
export const BACKENDS = ["auto", "tensorflow", "native", "wasm", "webgpu", "cpu"] as const;
export type BackendName = typeof BACKENDS[number];
