/**
 * Deno's built-in WebGPU through tfjs-webgpu, with its Conv2DBackpropFilter (one GPU thread per
 * weight) replaced by the dilated-Conv2D formulation of `conv_gradients.ts`.
 */
import * as tf from "../tf.ts";
import { conv2dBackpropFilter } from "./conv_gradients.ts";
import { type BackendInfo, BackendUnavailable } from "./common.ts";
import { keepConstantsOnDevice, type WebgpuInternals } from "./webgpu_device.ts";

let registered = false;

/** Dispatches per queue submit: untimed (no GPU here); chosen from the counts, to be timed on one. */
const SUBMIT_EVERY = 100;

/** Replace the webgpu backend's Conv2DBackpropFilter with the dilated-Conv2D one (once). */
function registerWebgpuKernels(): void {
  if (registered) return;
  registered = true;
  tf.unregisterKernel("Conv2DBackpropFilter", "webgpu");
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: "webgpu",
    kernelFunc: (args) => conv2dBackpropFilter("webgpu", args),
  });
}

/** `requireHardware`: refuse a software adapter (what `auto` wants; tests take any adapter). */
export async function startWebgpu(requireHardware: boolean): Promise<BackendInfo> {
  // Mesa's Vulkan loader complains on stderr when this is unset (headless machines, CI).
  if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "xdg-" }));
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) {
    throw new BackendUnavailable(
      "backend 'webgpu': no WebGPU adapter (install a Vulkan driver: apt-get install mesa-vulkan-drivers for a software one)",
    );
  }
  const software = adapter.info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(adapter.info.description);
  if (requireHardware && software) throw new BackendUnavailable("only a software WebGPU adapter");
  await import("@tensorflow/tfjs-backend-webgpu");
  // The tiled (matrix-multiply) transposed convolution instead of the naive one tfjs defaults to:
  // it is the whole generator; checked against cpu in tests/model_test.ts.
  tf.env().set("WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE", false);
  // One queue submit per SUBMIT_EVERY dispatches (tfjs: 15), so a step is a few submits, not ~45.
  tf.env().set("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE", SUBMIT_EVERY);
  registerWebgpuKernels();
  if (!await tf.setBackend("webgpu")) throw new BackendUnavailable("backend 'webgpu' failed to start");
  const backend = tf.backend() as unknown as WebgpuInternals & { constantsKept?: true };
  if (!backend.constantsKept) {
    keepConstantsOnDevice(backend);
    backend.constantsKept = true;
  }
  const description = adapter.info.description || adapter.info.vendor;
  return { name: "webgpu", threads: 0, detail: `${description}${software ? " (software)" : ""}` };
}
