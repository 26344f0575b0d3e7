/**
 * Native TensorFlow through tfjs-node(-gpu), only when the user installed it: its install step
 * downloads libtensorflow, which is on neither npm nor Debian, so it cannot be a dependency.
 */
import * as tf from "../tf.ts";
import { type BackendInfo, BackendUnavailable } from "./common.ts";

/** The optional packages, in order of preference. */
const PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

export async function startTensorflow(): Promise<BackendInfo> {
  for (const name of PACKAGES) {
    try {
      import.meta.resolve(name); // throws when the package is not in the import map
    } catch {
      continue;
    }
    await import(name);
    if (await tf.setBackend("tensorflow")) return { name: "tensorflow", threads: 0, detail: name };
  }
  throw new BackendUnavailable(
    "backend 'tensorflow' needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node: see docs/backends.md, 'The backends'",
  );
}
