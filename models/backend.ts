/**
 * Choosing and starting a tfjs backend (each lives in `backends/`). `train.backend` is one of these
 * names; `auto` takes the fastest that works here: tfjs-node(-gpu) when the user installed it, WebGPU
 * on a real (non-software) GPU, oneDNN when `libdnnl.so.2` loads, else wasm. The chosen backend and its thread count go into the lock,
 * because they can change the bytes of a trained model.
 */
import * as tf from "./tf.ts";
import "@tensorflow/tfjs-backend-cpu";
import { type BackendInfo, BackendUnavailable } from "./backends/common.ts";
import { startTensorflow } from "./backends/tensorflow.ts";
import { startWebgpu } from "./backends/webgpu.ts";
import { startWasm } from "./backends/wasm.ts";
import { removeNativeKernels, startNative } from "./backends/native.ts";

export { type BackendInfo, BackendUnavailable };

import { type BackendName, BACKENDS, EVAL_BACKENDS, type EvalBackendName } from "./choices.ts";

export { type BackendName, BACKENDS, EVAL_BACKENDS, type EvalBackendName };

export async function useBackend(requested: BackendName): Promise<BackendInfo> {
  // native lends its kernels to the wasm backend: take them back for any other choice.
  removeNativeKernels();
  switch (requested) {
    case "tensorflow":
      return await startTensorflow();
    case "webgpu":
      return await startWebgpu(false);
    case "native":
      return await startNative();
    case "wasm":
      return await startWasm();
    case "cpu":
      await tf.setBackend("cpu");
      return { name: "cpu", threads: 1, detail: "plain JavaScript" };
    case "auto": {
      for (const start of [startTensorflow, () => startWebgpu(true)]) {
        try {
          return await start();
        } catch (error) {
          if (!(error instanceof BackendUnavailable)) throw error;
        }
      }
      return await nativeElseWasm();
    }
  }
}

/** native when oneDNN loads, else wasm, with the reason in `note`. */
async function nativeElseWasm(): Promise<BackendInfo> {
  try {
    return await startNative();
  } catch (error) {
    if (!(error instanceof BackendUnavailable)) throw error;
    return { ...await startWasm(), note: error.message };
  }
}

/** The evaluation's backend: never a GPU (its nets were checked on CPU backends); `auto` is native, else wasm. */
export async function useEvalBackend(requested: EvalBackendName): Promise<BackendInfo> {
  return requested === "auto" ? await nativeElseWasm() : await useBackend(requested);
}
