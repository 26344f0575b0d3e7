/**
 * Debian's oneDNN (`libdnnl2` 2.6, C API v2: `dnnl_*` in `libdnnl.so.2`) through Deno FFI: the
 * convolutions and matrix products of the `native` backend, on every core (OpenMP).
 *
 * No compiler is involved: the C structs the API fills (memory and operation descriptors) are
 * opaque byte buffers here, sized from oneDNN 2.x's headers on x86-64, and the layout of the one
 * struct read back (the memory descriptor's rank and dimensions) is checked once at load against
 * what oneDNN itself reports, so a library whose ABI differs is refused rather than misread.
 * oneDNN 3.x changed the C API (opaque memory descriptors, no `*_desc_init`): major version 2 only.
 *
 * Safety: every pointer handed to oneDNN is taken just before the call from a live buffer (never
 * kept across a possible WebAssembly memory growth), and every buffer's size is checked against
 * what the primitive will read or write: a wrong size is a thrown error, not a segfault.
 */

/** sizeof(dnnl_memory_desc_t) in oneDNN 2.x on x86-64. */
const MEMORY_DESC_BYTES = 696;
/** At least sizeof(dnnl_convolution_desc_t) (5,976) and sizeof(dnnl_matmul_desc_t) (2,800). */
const OP_DESC_BYTES = 8192;
/** dnnl_dims_t: int64[DNNL_MAX_NDIMS]. */
const MAX_DIMS = 12;

// Enum values from dnnl_types.h (2.x).
const F32 = 3;
const Tag = { any: 1, a: 2, nhwc: 20, hwio: 30 } as const;
const CPU_ENGINE = 1;
const STREAM_DEFAULT = 0x7;
const PROP_FORWARD_TRAINING = 64;
const PROP_BACKWARD = 128;
const CONVOLUTION_DIRECT = 1;
const BINARY_ADD = 0x1fff0;
/** dnnl_normalization_flags_t: gamma and beta given, packed [2, C] (their gradients come out the same way) */
const USE_SCALESHIFT = 0x2;
/**
 * Elementwise functions (dnnl_alg_kind_t); relu with a slope alpha below zero is leaky ReLU.
 * `reluUseDst` is the same function whose gradient reads its output instead of its input.
 */
export const Eltwise = { relu: 0x1f, tanh: 0x2f, logistic: 0xaf, reluUseDst: 0x100 } as const;
const QUERY_MD = { weights: 131, diff_weights: 132, execArg: 255 } as const;
export const Arg = {
  src: 1,
  dst: 17,
  weights: 33,
  mean: 49,
  variance: 50,
  diffSrc: 129,
  diffDst: 145,
  diffWeights: 161,
  bias: 41,
  src1: 2, // a binary primitive's second operand (its first is SRC)
  from: 1, // a reorder's source and destination are SRC and DST
  to: 17,
  scaleShift: 33, // batch normalization's gamma and beta are its WEIGHTS, their gradient DIFF_WEIGHTS
  diffScaleShift: 161,
} as const;
const ISA_NAMES: Record<number, string> = {
  0x1: "sse41",
  0x3: "avx",
  0x7: "avx2",
  0xf: "avx512_mic",
  0x1f: "avx512_mic_4ops",
  0x27: "avx512_core",
  0x67: "avx512_core_vnni",
  0xe7: "avx512_core_bf16",
  0x3e7: "avx512_core_amx",
  0x407: "avx2_vnni",
};

const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_get_effective_cpu_isa: { parameters: [], result: "i32" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  dnnl_memory_desc_init_by_tag: { parameters: ["buffer", "i32", "buffer", "i32", "i32"], result: "i32" },
  dnnl_memory_desc_init_by_strides: { parameters: ["buffer", "i32", "buffer", "i32", "buffer"], result: "i32" },
  dnnl_memory_desc_get_size: { parameters: ["pointer"], result: "usize" },
  dnnl_memory_desc_equal: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_dilated_convolution_forward_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_dilated_convolution_backward_data_desc_init: {
    parameters: ["buffer", "i32", "pointer", "pointer", "pointer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_dilated_convolution_backward_weights_desc_init: {
    parameters: ["buffer", "i32", "pointer", "pointer", "pointer", "pointer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_eltwise_forward_desc_init: { parameters: ["buffer", "i32", "i32", "pointer", "f32", "f32"], result: "i32" },
  dnnl_eltwise_backward_desc_init: { parameters: ["buffer", "i32", "pointer", "pointer", "f32", "f32"], result: "i32" },
  dnnl_batch_normalization_forward_desc_init: { parameters: ["buffer", "i32", "pointer", "f32", "u32"], result: "i32" },
  dnnl_batch_normalization_backward_desc_init: {
    parameters: ["buffer", "i32", "pointer", "pointer", "f32", "u32"],
    result: "i32",
  },
  dnnl_binary_desc_init: { parameters: ["buffer", "i32", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_matmul_desc_init: { parameters: ["buffer", "pointer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_primitive_desc_create: { parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_primitive_attr_create: { parameters: ["buffer"], result: "i32" },
  dnnl_primitive_attr_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_post_ops_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_post_ops_append_eltwise: { parameters: ["pointer", "f32", "i32", "f32", "f32"], result: "i32" },
  dnnl_primitive_desc_query_md: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
} as const;

/** OpenMP, which Debian's oneDNN is built on: the thread count is set here, once. */
const OPENMP_SYMBOLS = {
  omp_set_num_threads: { parameters: ["i32"], result: "void" },
  omp_get_max_threads: { parameters: [], result: "i32" },
} as const;

const STATUS = [
  "success",
  "out of memory",
  "invalid arguments",
  "unimplemented",
  "iterator ends",
  "runtime error",
  "not required",
];

export class DnnlUnavailable extends Error {}

const SONAME = "libdnnl.so.2";
export const DNNL_PATH_ENV = "FACEGAN_DNNL_PATH";
/** How to get the library, for every line that says it is missing. */
export const DNNL_FIX =
  `on Debian 12 or Ubuntu 22.04+ 'sudo apt-get install libdnnl2', elsewhere set ${DNNL_PATH_ENV} to a oneDNN 2.x ${SONAME}`;

/**
 * Where libdnnl.so.2 is looked for, in order: FACEGAN_DNNL_PATH alone when it is set; else by its
 * soname on the loader's search path (LD_LIBRARY_PATH, ld.so.cache), then the folders
 * distributions and source builds put it in, which the loader's cache may not list.
 */
function dnnlCandidates(): string[] {
  const chosen = Deno.env.get(DNNL_PATH_ENV);
  if (chosen) return [chosen];
  const folders = [
    `/usr/lib/${Deno.build.arch}-linux-gnu`,
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/lib64",
  ];
  return [SONAME, ...folders.map((folder) => `${folder}/${SONAME}`)];
}

/**
 * The first candidate that opens and is oneDNN 2.x (the C API this module speaks): its path.
 * Throws DnnlUnavailable with what was tried and the fix, in one line.
 */
export function locateDnnl(): string {
  const candidates = dnnlCandidates();
  const failures: string[] = [];
  for (const path of candidates) {
    let library: Deno.DynamicLibrary<{ dnnl_version: typeof SYMBOLS.dnnl_version }>;
    try {
      library = Deno.dlopen(path, { dnnl_version: SYMBOLS.dnnl_version });
    } catch (error) {
      // Deno says "Could not open library: " twice before the loader's own message.
      const why = (error as Error).message.split("\n")[0].replace(/^(Could not open library: )+/, "");
      // A file that is absent is said below, once for all; the soname and a folder often name the
      // same file: its failure once.
      const absent = candidates.length > 1 && /No such file/.test(why);
      if (!absent && !failures.length) failures.push(`${path} could not be loaded (${why})`);
      continue;
    }
    const view = new Deno.UnsafePointerView(library.symbols.dnnl_version()!);
    const version = [0, 4, 8].map((offset) => view.getInt32(offset)).join(".");
    library.close();
    if (version.startsWith("2.")) return path;
    failures.push(`${path} is oneDNN ${version}; the native backend needs oneDNN 2.x`);
  }
  if (!failures.length) {
    const folders = candidates.slice(1).map((path) => path.slice(0, -SONAME.length - 1));
    failures.push(`${SONAME} not found (on the loader's path, nor in ${folders.join(", ")})`);
  }
  throw new DnnlUnavailable(`${failures.join("; ")}: ${DNNL_FIX}`);
}

type Library = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
type Pointer = Deno.PointerValue;

/** A memory descriptor: an opaque dnnl_memory_desc_t kept alive with its pointer. */
export class MemoryDesc {
  readonly bytes = new Uint8Array(MEMORY_DESC_BYTES);
  get pointer(): Pointer {
    return Deno.UnsafePointer.of(this.bytes);
  }
}

function dims(values: number[]): BigInt64Array {
  const out = new BigInt64Array(MAX_DIMS);
  values.forEach((value, i) => out[i] = BigInt(value));
  return out;
}

function pointerOut(): BigUint64Array {
  return new BigUint64Array(1);
}

function fromOut(out: BigUint64Array): Pointer {
  return Deno.UnsafePointer.create(out[0]);
}

/**
 * oneDNN's AVX-512 kernels load and store 64 bytes at a time: memory they use should start on a
 * 64-byte boundary, or each vector touches two cache lines (wasm_heap.ts' alignTensors).
 */
export const VECTOR_BYTES = 64;

/** `bytes` zeroed bytes that start on a 64-byte boundary. */
export function alignedBytes(bytes: number): Uint8Array {
  const buffer = new Uint8Array(bytes + VECTOR_BYTES - 1);
  const address = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
  return buffer.subarray((VECTOR_BYTES - address % VECTOR_BYTES) % VECTOR_BYTES).subarray(0, bytes);
}

/** One source of memory for a primitive argument: where the bytes are, and how many there are. */
export interface Region {
  pointer: Pointer;
  bytes: number;
}

/** A primitive with the memory objects of its arguments; regions are bound anew at every run. */
export class Primitive {
  private readonly args: Uint8Array;
  constructor(
    private readonly dnnl: Dnnl,
    private readonly handle: Pointer,
    private readonly memories: { arg: number; memory: Pointer; bytes: number }[],
  ) {
    this.args = new Uint8Array(16 * memories.length);
    const view = new DataView(this.args.buffer);
    memories.forEach(({ arg, memory }, i) => {
      view.setInt32(16 * i, arg, true);
      view.setBigUint64(16 * i + 8, BigInt(Deno.UnsafePointer.value(memory)), true);
    });
  }

  /** Bind each argument to its region (sizes checked) and run; waits for the result. */
  run(regions: Record<number, Region>): void {
    for (const { arg, memory, bytes } of this.memories) {
      const region = regions[arg];
      if (!region) throw new Error(`oneDNN primitive: argument ${arg} not given`);
      if (region.bytes !== bytes) {
        throw new Error(`oneDNN primitive: argument ${arg} has ${region.bytes} bytes, the primitive needs ${bytes}`);
      }
      this.dnnl.check("dnnl_memory_set_data_handle", this.dnnl.lib.dnnl_memory_set_data_handle(memory, region.pointer));
    }
    this.dnnl.runs++;
    this.dnnl.check(
      "dnnl_primitive_execute",
      this.dnnl.lib.dnnl_primitive_execute(this.handle, this.dnnl.stream, this.memories.length, this.args),
    );
    this.dnnl.check("dnnl_stream_wait", this.dnnl.lib.dnnl_stream_wait(this.dnnl.stream));
  }
}

/** Geometry of a 2-D convolution in oneDNN's terms (NHWC activations, HWIO weights as tfjs keeps them). */
export interface ConvGeometry {
  batch: number;
  inChannels: number;
  inHeight: number;
  inWidth: number;
  outChannels: number;
  outHeight: number;
  outWidth: number;
  filterHeight: number;
  filterWidth: number;
  strides: [number, number];
  /** oneDNN counts dilation from 0 (tfjs from 1) */
  dilations: [number, number];
  padBefore: [number, number];
  padAfter: [number, number];
}

export type ConvDirection = "forward" | "backwardData" | "backwardWeights";

/**
 * What a forward convolution may do as it writes each output value: add the channel's bias, then
 * apply an elementwise function (`Eltwise`; relu with alpha is leaky ReLU).
 */
export interface Epilogue {
  activation: number;
  alpha: number;
}

/** A primitive plus the reorders that move weights between tfjs' layout and the one oneDNN chose. */
export interface PlannedPrimitive {
  primitive: Primitive;
  /**
   * Weights from tfjs' layout to oneDNN's before the primitive runs (into a copy of `bytes` bytes
   * the caller keeps per weights tensor), or from oneDNN's scratch to tfjs' layout after it.
   */
  reorder?:
    | { primitive: Primitive; before: true; bytes: number }
    | { primitive: Primitive; before: false; scratch: Uint8Array };
}

let loaded: Dnnl | null = null;

/** oneDNN, loaded once per process; throws DnnlUnavailable with the reason when it cannot be. */
export function loadDnnl(): Dnnl {
  if (!loaded) {
    const requested = Number(Deno.env.get("FACEGAN_THREADS") ?? navigator.hardwareConcurrency);
    if (!Number.isInteger(requested) || requested < 1) {
      throw new DnnlUnavailable(`FACEGAN_THREADS must be a positive integer, got '${Deno.env.get("FACEGAN_THREADS")}'`);
    }
    // OpenMP threads that spin while waiting for work stall a busy machine: on 2 cores shared with
    // other processes a step took 2.7-3.1 s spinning and 0.5-0.6 s sleeping (libgomp reads this
    // when it loads, with oneDNN, just below).
    if (!Deno.env.get("OMP_WAIT_POLICY")) Deno.env.set("OMP_WAIT_POLICY", "PASSIVE");
    loaded = new Dnnl(requested);
  }
  return loaded;
}

export class Dnnl {
  readonly lib: Library;
  readonly engine: Pointer;
  readonly stream: Pointer;
  readonly version: string;
  readonly isa: string;
  readonly threads: number;
  private readonly openmp: Deno.DynamicLibrary<typeof OPENMP_SYMBOLS>["symbols"];
  /** primitives run so far (reorders included): what `deno task bench training` counts per step */
  runs = 0;

  /** The library `locateDnnl()` finds, run on `threads` OpenMP threads; throws DnnlUnavailable. */
  constructor(threads: number) {
    const path = locateDnnl();
    const library = Deno.dlopen(path, SYMBOLS);
    this.lib = library.symbols;
    const version = new Deno.UnsafePointerView(this.lib.dnnl_version()!);
    this.version = [0, 4, 8].map((offset) => version.getInt32(offset)).join(".");
    this.openmp = Deno.dlopen("libgomp.so.1", OPENMP_SYMBOLS).symbols;
    this.openmp.omp_set_num_threads(threads);
    this.threads = this.openmp.omp_get_max_threads();
    this.isa = ISA_NAMES[this.lib.dnnl_get_effective_cpu_isa()] ?? "unknown";
    const engine = pointerOut();
    this.check("dnnl_engine_create", this.lib.dnnl_engine_create(engine, CPU_ENGINE, 0n));
    this.engine = fromOut(engine);
    const stream = pointerOut();
    this.check("dnnl_stream_create", this.lib.dnnl_stream_create(stream, this.engine, STREAM_DEFAULT));
    this.stream = fromOut(stream);
    this.checkAbi(path);
  }

  /**
   * `work` (creating or running primitives) on one OpenMP thread. For oneDNN's batch
   * normalization: it spins at barriers between its passes, and on 2 cores shared with other
   * processes one forward call of the 32 px network took ~22 ms on 2 threads, ~2.6 ms on one.
   */
  singleThreaded<T>(work: () => T): T {
    this.openmp.omp_set_num_threads(1);
    try {
      return work();
    } finally {
      this.openmp.omp_set_num_threads(this.threads);
    }
  }

  check(name: string, status: number): void {
    if (status !== 0) throw new Error(`oneDNN ${name} failed: ${STATUS[status] ?? `status ${status}`}`);
  }

  /** The descriptor layout this module relies on: rank at offset 0, int64 dims from offset 8. */
  private checkAbi(path: string): void {
    const md = this.plain([2, 3, 4, 5], Tag.nhwc);
    const view = new DataView(md.bytes.buffer);
    const rank = view.getInt32(0, true);
    const shape = [0, 1, 2, 3].map((i) => Number(view.getBigInt64(8 + 8 * i, true)));
    const size = Number(this.lib.dnnl_memory_desc_get_size(md.pointer));
    if (rank !== 4 || shape.join() !== "2,3,4,5" || size !== 2 * 3 * 4 * 5 * 4) {
      throw new DnnlUnavailable(`${path} (oneDNN ${this.version}) does not have the memory descriptor of 2.x`);
    }
  }

  /** A dense f32 descriptor: `shape` in oneDNN's logical order (N,C,H,W / O,I,H,W), `tag` the layout. */
  plain(shape: number[], tag: number): MemoryDesc {
    const md = new MemoryDesc();
    this.check(
      "dnnl_memory_desc_init_by_tag",
      this.lib.dnnl_memory_desc_init_by_tag(md.bytes, shape.length, dims(shape), F32, tag),
    );
    return md;
  }

  strided(shape: number[], strides: number[]): MemoryDesc {
    const md = new MemoryDesc();
    this.check(
      "dnnl_memory_desc_init_by_strides",
      this.lib.dnnl_memory_desc_init_by_strides(md.bytes, shape.length, dims(shape), F32, dims(strides)),
    );
    return md;
  }

  bytesOf(md: Pointer): number {
    return Number(this.lib.dnnl_memory_desc_get_size(md));
  }

  private memory(md: Pointer): Pointer {
    const out = pointerOut();
    // The handle is bound at every run; none is owned here.
    this.check("dnnl_memory_create", this.lib.dnnl_memory_create(out, md, this.engine, null));
    return fromOut(out);
  }

  private primitiveDesc(opDesc: Uint8Array, hint: Pointer | null = null, attr: Pointer | null = null): Pointer {
    const out = pointerOut();
    this.check("dnnl_primitive_desc_create", this.lib.dnnl_primitive_desc_create(out, opDesc, attr, this.engine, hint));
    return fromOut(out);
  }

  /** Primitive attributes with one eltwise post-op: `algorithm` applied to each value as it is written. */
  private withActivation<T>(algorithm: number, alpha: number, use: (attr: Pointer) => T): T {
    const postOps = pointerOut();
    this.check("dnnl_post_ops_create", this.lib.dnnl_post_ops_create(postOps));
    const attr = pointerOut();
    try {
      this.check(
        "dnnl_post_ops_append_eltwise",
        this.lib.dnnl_post_ops_append_eltwise(fromOut(postOps), 1, algorithm, alpha, 0),
      );
      this.check("dnnl_primitive_attr_create", this.lib.dnnl_primitive_attr_create(attr));
      this.check(
        "dnnl_primitive_attr_set_post_ops",
        this.lib.dnnl_primitive_attr_set_post_ops(fromOut(attr), fromOut(postOps)),
      );
      return use(fromOut(attr)); // the primitive descriptor keeps its own copy
    } finally {
      if (attr[0]) this.lib.dnnl_primitive_attr_destroy(fromOut(attr));
      this.lib.dnnl_post_ops_destroy(fromOut(postOps));
    }
  }

  private primitive(pd: Pointer, args: { arg: number; md: Pointer }[]): Primitive {
    const out = pointerOut();
    this.check("dnnl_primitive_create", this.lib.dnnl_primitive_create(out, pd));
    return new Primitive(
      this,
      fromOut(out),
      args.map(({ arg, md }) => ({ arg, memory: this.memory(md), bytes: this.bytesOf(md) })),
    );
  }

  /** A copy from one layout (or strided view) to another. */
  reorder(from: Pointer, to: Pointer): Primitive {
    const out = pointerOut();
    this.check(
      "dnnl_reorder_primitive_desc_create",
      this.lib.dnnl_reorder_primitive_desc_create(out, from, this.engine, to, this.engine, null),
    );
    return this.primitive(fromOut(out), [{ arg: Arg.from, md: from }, { arg: Arg.to, md: to }]);
  }

  private query(pd: Pointer, what: number, index = 0): Pointer {
    const md = this.lib.dnnl_primitive_desc_query_md(pd, what, index);
    if (!md) throw new Error(`oneDNN: primitive has no memory descriptor ${what}`);
    return md;
  }

  /**
   * A convolution in one direction, with NHWC activations and HWIO weights at its boundary. The
   * weights inside take the layout oneDNN prefers (blocked, 3-4x faster than HWIO in a prototype),
   * with a reorder from or to tfjs' layout around the call: weights are small, activations are not.
   */
  convolution(direction: ConvDirection, g: ConvGeometry, epilogue?: Epilogue): PlannedPrimitive {
    if (epilogue && direction !== "forward") {
      throw new Error("oneDNN: a bias and activation go with forward convolutions only");
    }
    const bias = epilogue ? this.plain([g.outChannels], Tag.a) : null;
    const src = this.plain([g.batch, g.inChannels, g.inHeight, g.inWidth], Tag.nhwc);
    const dst = this.plain([g.batch, g.outChannels, g.outHeight, g.outWidth], Tag.nhwc);
    const weightShape = [g.outChannels, g.inChannels, g.filterHeight, g.filterWidth];
    const userWeights = this.plain(weightShape, Tag.hwio);
    const anyWeights = this.plain(weightShape, Tag.any);
    const geometry = [dims(g.strides), dims(g.dilations), dims(g.padBefore), dims(g.padAfter)] as const;
    const forwardDesc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_dilated_convolution_forward_desc_init",
      this.lib.dnnl_dilated_convolution_forward_desc_init(
        forwardDesc,
        PROP_FORWARD_TRAINING,
        CONVOLUTION_DIRECT,
        src.pointer,
        anyWeights.pointer,
        bias?.pointer ?? null,
        dst.pointer,
        ...geometry,
      ),
    );
    const forward = epilogue
      ? this.withActivation(epilogue.activation, epilogue.alpha, (attr) => this.primitiveDesc(forwardDesc, null, attr))
      : this.primitiveDesc(forwardDesc);
    let pd = forward;
    if (direction === "backwardData") {
      const desc = new Uint8Array(OP_DESC_BYTES);
      this.check(
        "dnnl_dilated_convolution_backward_data_desc_init",
        this.lib.dnnl_dilated_convolution_backward_data_desc_init(
          desc,
          CONVOLUTION_DIRECT,
          src.pointer,
          anyWeights.pointer,
          dst.pointer,
          ...geometry,
        ),
      );
      pd = this.primitiveDesc(desc, forward);
    } else if (direction === "backwardWeights") {
      const desc = new Uint8Array(OP_DESC_BYTES);
      this.check(
        "dnnl_dilated_convolution_backward_weights_desc_init",
        this.lib.dnnl_dilated_convolution_backward_weights_desc_init(
          desc,
          CONVOLUTION_DIRECT,
          src.pointer,
          anyWeights.pointer,
          null,
          dst.pointer,
          ...geometry,
        ),
      );
      pd = this.primitiveDesc(desc, forward);
    }
    const weightsArg = direction === "backwardWeights" ? Arg.diffWeights : Arg.weights;
    const weights = this.query(pd, direction === "backwardWeights" ? QUERY_MD.diff_weights : QUERY_MD.weights);
    const args = direction === "forward"
      ? [
        { arg: Arg.src, md: src.pointer },
        { arg: Arg.dst, md: dst.pointer },
        ...bias ? [{ arg: Arg.bias, md: bias.pointer }] : [],
      ]
      : direction === "backwardData"
      ? [{ arg: Arg.diffSrc, md: src.pointer }, { arg: Arg.diffDst, md: dst.pointer }]
      : [{ arg: Arg.src, md: src.pointer }, { arg: Arg.diffDst, md: dst.pointer }];
    const primitive = this.primitive(pd, [...args, { arg: weightsArg, md: weights }]);
    if (this.lib.dnnl_memory_desc_equal(weights, userWeights.pointer)) return { primitive };
    const reorder = direction === "backwardWeights"
      ? {
        primitive: this.reorder(weights, userWeights.pointer),
        before: false as const,
        scratch: alignedBytes(this.bytesOf(weights)),
      }
      : { primitive: this.reorder(userWeights.pointer, weights), before: true as const, bytes: this.bytesOf(weights) };
    return { primitive, reorder };
  }

  /**
   * An elementwise function over `size` floats (one dimension: the layout does not matter), or its
   * gradient: diff_src from diff_dst and the forward input src (the output dst for a `*UseDst`
   * algorithm).
   */
  eltwise(algorithm: number, size: number, alpha: number, backward: boolean): Primitive {
    const data = this.plain([size], Tag.a);
    const desc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_eltwise_forward_desc_init",
      this.lib.dnnl_eltwise_forward_desc_init(desc, PROP_FORWARD_TRAINING, algorithm, data.pointer, alpha, 0),
    );
    const forward = this.primitiveDesc(desc);
    if (!backward) {
      return this.primitive(forward, [{ arg: Arg.src, md: data.pointer }, { arg: Arg.dst, md: data.pointer }]);
    }
    const backwardDesc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_eltwise_backward_desc_init",
      this.lib.dnnl_eltwise_backward_desc_init(backwardDesc, algorithm, data.pointer, data.pointer, alpha, 0),
    );
    return this.primitive(this.primitiveDesc(backwardDesc, forward), [
      { arg: algorithm === Eltwise.reluUseDst ? Arg.dst : Arg.src, md: data.pointer },
      { arg: Arg.diffDst, md: data.pointer },
      { arg: Arg.diffSrc, md: data.pointer },
    ]);
  }

  /**
   * Training-mode batch normalization of NHWC data, `shape` [N, C, H, W], with gamma and beta:
   * the forward pass (writes the batch's mean and biased variance) and the backward pass (diff
   * src, and the gradients of gamma and beta packed [2, C]).
   */
  batchNormalization(shape: number[], epsilon: number): { forward: Primitive; backward: Primitive } {
    const data = this.plain(shape, Tag.nhwc);
    const forwardDesc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_batch_normalization_forward_desc_init",
      this.lib.dnnl_batch_normalization_forward_desc_init(
        forwardDesc,
        PROP_FORWARD_TRAINING,
        data.pointer,
        epsilon,
        USE_SCALESHIFT,
      ),
    );
    const forward = this.primitiveDesc(forwardDesc);
    const backwardDesc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_batch_normalization_backward_desc_init",
      this.lib.dnnl_batch_normalization_backward_desc_init(
        backwardDesc,
        PROP_BACKWARD,
        data.pointer,
        data.pointer,
        epsilon,
        USE_SCALESHIFT,
      ),
    );
    const backward = this.primitiveDesc(backwardDesc, forward);
    const withArgs = (pd: Pointer, args: number[]) =>
      this.primitive(pd, args.map((arg) => ({ arg, md: this.query(pd, QUERY_MD.execArg, arg) })));
    return {
      forward: withArgs(forward, [Arg.src, Arg.dst, Arg.mean, Arg.variance, Arg.scaleShift]),
      backward: withArgs(backward, [
        Arg.src,
        Arg.mean,
        Arg.variance,
        Arg.diffDst,
        Arg.scaleShift,
        Arg.diffSrc,
        Arg.diffScaleShift,
      ]),
    };
  }

  /**
   * dst = src + src1 where src1 holds one value per channel: [rows, C] + [C], described as NHWC with
   * H = W = 1, which oneDNN treats as its per-channel broadcast (3-4x faster than as [rows, C] + [1, C]).
   */
  channelAdd(rows: number, channels: number): Primitive {
    const data = this.plain([rows, channels, 1, 1], Tag.nhwc);
    const perChannel = this.plain([1, channels, 1, 1], Tag.nhwc);
    const desc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_binary_desc_init",
      this.lib.dnnl_binary_desc_init(desc, BINARY_ADD, data.pointer, perChannel.pointer, data.pointer),
    );
    return this.primitive(this.primitiveDesc(desc), [
      { arg: Arg.src, md: data.pointer },
      { arg: Arg.src1, md: perChannel.pointer },
      { arg: Arg.dst, md: data.pointer },
    ]);
  }

  /** Batched matrix product dst[b] = src[b] x weights[b], each operand described by its strides. */
  matmul(src: MemoryDesc, weights: MemoryDesc, dst: MemoryDesc): Primitive {
    const desc = new Uint8Array(OP_DESC_BYTES);
    this.check(
      "dnnl_matmul_desc_init",
      this.lib.dnnl_matmul_desc_init(desc, src.pointer, weights.pointer, null, dst.pointer),
    );
    return this.primitive(this.primitiveDesc(desc), [
      { arg: Arg.src, md: src.pointer },
      { arg: Arg.weights, md: weights.pointer },
      { arg: Arg.dst, md: dst.pointer },
    ]);
  }
}
