/**
 * The parts of tfjs-webgpu's backend (4.22) that our WebGPU patches reach into, and the patches
 * that need them: constants kept on the device, and Adam as one dispatch per weight. Both exist
 * because in tfjs every JS number an op meets becomes a fresh tensor uploaded through a mapped
 * buffer (Deno's slow `getMappedRange`), and an Adam step was ~14 ops per weight, each with its
 * own scalars: 284 uploads and 953 dispatches per training step of the seeds' DCGAN.
 */
import * as tf from "../tf.ts";

interface TensorData {
  dtype: tf.DataType;
  values: tf.backend_util.BackendValues | null;
  resource: GPUBuffer | null;
  refCount: number;
}

/** What we use of WebGPUBackend; the names are tfjs 4.22's (pinned in deno.json). */
export interface WebgpuInternals {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): TensorData };
  commandEncoder: GPUCommandEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  uniformPendingDisposal: GPUBuffer[];
  bufferManager: { acquireBuffer(size: number, usage: number): GPUBuffer };
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
}

/** The running webgpu backend, as far as we use it. */
export function webgpuBackend(): WebgpuInternals {
  return tf.backend() as unknown as WebgpuInternals;
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** A compute pipeline for `code` (entry point `main`), compiled once per device. */
export function pipelineFor(device: GPUDevice, code: string): GPUComputePipeline {
  if (!pipelines.has(device)) pipelines.set(device, new Map());
  const cache = pipelines.get(device)!;
  let pipeline = cache.get(code);
  if (!pipeline) {
    pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
    });
    cache.set(code, pipeline);
  }
  return pipeline;
}

/** The device buffer of a tensor, held until the commands that use it are submitted (tfjs' own rule). */
export function bufferOf(backend: WebgpuInternals, tensor: tf.TensorInfo): GPUBuffer {
  backend.uploadToGPU(tensor.dataId);
  backend.commandQueueOwnedIds.add(tensor.dataId);
  return backend.tensorMap.get(tensor.dataId).resource!;
}

/** A float32 tensor (as a kernel returns it) with a device buffer that our own commands write. */
export function deviceTensorInfo(backend: WebgpuInternals, shape: number[]): tf.TensorInfo {
  const info = backend.makeTensorInfo(shape, "float32");
  backend.uploadToGPU(info.dataId); // no values: only takes a buffer from tfjs' pool
  return info;
}

/** A uniform block for one dispatch, recycled after the submit like tfjs' own uniforms. */
export function uniformBlock(backend: WebgpuInternals, block: ArrayBuffer): GPUBuffer {
  const buffer = backend.bufferManager.acquireBuffer(
    block.byteLength,
    GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM,
  );
  backend.queue.writeBuffer(buffer, 0, block);
  backend.uniformPendingDisposal.push(buffer);
  return buffer;
}

/** Encode dispatches of `pipeline` (bind group 0 = `buffers` in binding order) after tfjs' pending work. */
export function encodeDispatches(
  backend: WebgpuInternals,
  pipeline: GPUComputePipeline,
  dispatches: { buffers: GPUBuffer[]; workgroups: number }[],
): void {
  const groups = dispatches.map(({ buffers }) =>
    backend.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    })
  );
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  const pass = backend.commandEncoder!.beginComputePass();
  pass.setPipeline(pipeline);
  const limit = backend.device.limits.maxComputeWorkgroupsPerDimension;
  dispatches.forEach(({ workgroups }, i) => {
    pass.setBindGroup(0, groups[i]);
    pass.dispatchWorkgroups(Math.min(workgroups, limit), Math.ceil(workgroups / limit));
  });
  pass.end();
}

/** Copy `count` floats between device tensors (no dispatch, no upload). */
export function copyFloats(
  backend: WebgpuInternals,
  source: tf.TensorInfo,
  sourceOffset: number,
  target: tf.TensorInfo,
  targetOffset: number,
  count: number,
): void {
  const [from, to] = [bufferOf(backend, source), bufferOf(backend, target)];
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.commandEncoder!.copyBufferToBuffer(from, sourceOffset * 4, to, targetOffset * 4, count * 4);
}

/** At most this many distinct constants stay on the device; past that they are uploaded as before. */
const MAX_CONSTANTS = 1024;

/**
 * Upload each distinct one-element tensor value once and copy it on the device afterwards: a
 * GPU-side copy instead of a CPU upload, no dispatch, same bits. (Learning-rate and Adam
 * corrections change every step; they travel as uniforms of the Adam kernel instead.)
 */
export function keepConstantsOnDevice(backend: WebgpuInternals): void {
  const upload = backend.uploadToGPU.bind(backend);
  const constants = new Map<string, GPUBuffer>();
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  backend.uploadToGPU = (dataId: object) => {
    const data = backend.tensorMap.get(dataId);
    if (data.resource || data.values?.length !== 1 || data.dtype === "string" || data.dtype === "complex64") {
      return upload(dataId);
    }
    // float32 as its bits; int32 and bool are int32 on the device.
    const bits = data.dtype === "float32"
      ? new Uint32Array(Float32Array.of(data.values[0] as number).buffer)[0]
      : Number(data.values[0]);
    const key = `${data.dtype === "float32" ? "f" : "i"}${bits}`;
    let source = constants.get(key);
    if (!source) {
      if (constants.size >= MAX_CONSTANTS) return upload(dataId);
      source = backend.device.createBuffer({ size: 4, usage, mappedAtCreation: true });
      new (data.dtype === "float32" ? Float32Array : Int32Array)(source.getMappedRange()).set(
        data.values as ArrayLike<number>,
      );
      source.unmap();
      constants.set(key, source);
    }
    const buffer = backend.bufferManager.acquireBuffer(4, usage);
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.commandEncoder!.copyBufferToBuffer(source, 0, buffer, 0, 4);
    data.values = null;
    data.resource = buffer;
  };
}

const WORKGROUP = 64;
/** Same operations in the same order as the tf-ops Adam in models/gan.ts, in float32. */
const ADAM_SHADER = `
struct Constants { beta1: f32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32,
                   correction1: f32, correction2: f32, lr: f32, size: u32 }
@group(0) @binding(0) var<storage, read_write> weight: array<f32>;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<uniform> c: Constants;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${WORKGROUP}u;
  if (i >= c.size) { return; }
  let g = grad[i];
  let newM = m[i] * c.beta1 + g * c.oneMinusBeta1;
  let newV = v[i] * c.beta2 + (g * g) * c.oneMinusBeta2;
  m[i] = newM;
  v[i] = newV;
  weight[i] = weight[i] - ((newM / c.correction1) / (sqrt(newV / c.correction2) + 1e-8)) * c.lr;
}`;

export interface AdamConstants {
  beta1: number;
  beta2: number;
  correction1: number;
  correction2: number;
  lr: number;
}

/** A variable's buffer, alone (a shared buffer would change its other owners), on the device. */
function ownBuffer(backend: WebgpuInternals, variable: tf.Variable): GPUBuffer {
  if (backend.tensorMap.get(variable.dataId).refCount > 1) variable.assign(tf.tidy(() => variable.mul(1)));
  const buffer = bufferOf(backend, variable);
  backend.tensorMap.get(variable.dataId).values = null; // a value cached by an earlier read goes stale now
  return buffer;
}

/**
 * Adam in place on the webgpu backend: one dispatch per weight updates the weight and both
 * moments; the per-step numbers travel in each dispatch's uniform block.
 */
export function adamOnDevice(
  triples: { variable: tf.Variable; m: tf.Variable; v: tf.Variable; grad: tf.Tensor }[],
  constants: AdamConstants,
): void {
  const backend = webgpuBackend();
  const { beta1, beta2, correction1, correction2, lr } = constants;
  const dispatches = triples.map(({ variable, m, v, grad }) => {
    const block = new ArrayBuffer(32);
    new Float32Array(block, 0, 7).set([beta1, 1 - beta1, beta2, 1 - beta2, correction1, correction2, lr]);
    new Uint32Array(block, 28, 1)[0] = variable.size;
    const buffers = [
      ownBuffer(backend, variable),
      ownBuffer(backend, m),
      ownBuffer(backend, v),
      bufferOf(backend, grad),
    ];
    return { buffers: [...buffers, uniformBlock(backend, block)], workgroups: Math.ceil(variable.size / WORKGROUP) };
  });
  encodeDispatches(backend, pipelineFor(backend.device, ADAM_SHADER), dispatches);
}
