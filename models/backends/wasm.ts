/**
 * tfjs-wasm (SIMD, one thread) with the convolution gradients rebuilt from its fast Conv2D
 * (`conv_gradients.ts`): it has no Conv2DBackpropFilter at all, and its Conv2DBackpropInput is plain
 * loops, 10-20x slower than its XNNPACK Conv2D.
 */
import * as tf from "../tf.ts";
import { setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { conv2dBackpropFilter, conv2dBackpropInput } from "./conv_gradients.ts";
import { type BackendInfo, BackendUnavailable } from "./common.ts";

let registered = false;

/** Register the gradient kernels with the wasm backend (once). */
function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: "wasm",
    kernelFunc: (args) => conv2dBackpropFilter("wasm", args),
  });
  // The built-in stays as the fallback for shapes the phase split does not cover; its setup
  // (binding the C function) must still run when the backend starts.
  const builtIn = tf.getKernel("Conv2DBackpropInput", "wasm")!;
  tf.unregisterKernel("Conv2DBackpropInput", "wasm");
  tf.registerKernel({
    kernelName: "Conv2DBackpropInput",
    backendName: "wasm",
    setupFunc: builtIn.setupFunc,
    kernelFunc: (args) => conv2dBackpropInput(args, builtIn.kernelFunc),
  });
}

export async function startWasm(): Promise<BackendInfo> {
  const entry = import.meta.resolve("@tensorflow/tfjs-backend-wasm");
  setWasmPaths(new URL("./", entry).href);
  // Deno lacks the cross-origin isolation the threaded build checks for; one thread is also
  // what keeps the reduction order, and so the bytes, fixed.
  setThreadsCount(1);
  registerWasmKernels();
  if (!await tf.setBackend("wasm")) throw new BackendUnavailable("backend 'wasm' failed to start");
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  return { name: "wasm", threads: 1, detail: simd ? "simd" : "no simd" };
}
