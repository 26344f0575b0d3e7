/**
 * Choosing and starting a tfjs backend. `train.backend` is one of these names; `auto` takes the
 * fastest that works here: tfjs-node(-gpu) when the user installed it, WebGPU on a real
 * (non-software) GPU, else wasm. The chosen backend and its thread count go into the lock,
 * because they can change the bytes of a trained model.
 */
import * as tf from "./tf.ts";
import "@tensorflow/tfjs-backend-cpu";
import { setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { registerWasmKernels, registerWebgpuKernels } from "./conv_kernels.ts";

export const BACKENDS = ["auto", "tensorflow", "wasm", "webgpu", "cpu"] as const;
export type BackendName = typeof BACKENDS[number];

export interface BackendInfo {
  name: Exclude<BackendName, "auto">;
  threads: number;
  detail: string;
}

/** The optional native packages, in order of preference; installed by the user, never required. */
const NATIVE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

export class BackendUnavailable extends Error {}

async function startTensorflow(): Promise<BackendInfo> {
  for (const name of NATIVE_PACKAGES) {
    try {
      import.meta.resolve(name); // throws when the package is not in the import map
    } catch {
      continue;
    }
    await import(name);
    if (await tf.setBackend("tensorflow")) return { name: "tensorflow", threads: 0, detail: name };
  }
  throw new BackendUnavailable(
    "backend 'tensorflow' needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node: see README, 'Native TensorFlow'",
  );
}

async function startWebgpu(requireHardware: boolean): Promise<BackendInfo> {
  // Mesa's Vulkan loader complains on stderr when this is unset (headless machines, CI).
  if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "xdg-" }));
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) throw new BackendUnavailable("backend 'webgpu': no WebGPU adapter (install a Vulkan driver)");
  const software = adapter.info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(adapter.info.description);
  if (requireHardware && software) throw new BackendUnavailable("only a software WebGPU adapter");
  await import("@tensorflow/tfjs-backend-webgpu");
  registerWebgpuKernels();
  if (!await tf.setBackend("webgpu")) throw new BackendUnavailable("backend 'webgpu' failed to start");
  const description = adapter.info.description || adapter.info.vendor;
  return { name: "webgpu", threads: 0, detail: `${description}${software ? " (software)" : ""}` };
}

async function startWasm(): Promise<BackendInfo> {
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

export async function useBackend(requested: BackendName): Promise<BackendInfo> {
  switch (requested) {
    case "tensorflow":
      return await startTensorflow();
    case "webgpu":
      return await startWebgpu(false);
    case "wasm":
      return await startWasm();
    case "cpu":
      await tf.setBackend("cpu");
      return { name: "cpu", threads: 1, detail: "plain JavaScript" };
    case "auto":
      for (const start of [startTensorflow, () => startWebgpu(true)]) {
        try {
          return await start();
        } catch (error) {
          if (!(error instanceof BackendUnavailable)) throw error;
        }
      }
      return await startWasm();
  }
}
