/**
 * The generator as a TensorFlow graph (GraphDef nodes in their JSON form, plus the constant
 * tensors they name), the shape tfjs' GraphModel loads. Pure: data/tfjs_model_file.ts writes it.
 *
 * It spells out Generator.forward in eval mode op by op, with the same ops in the same order, so
 * the exported model computes the same numbers: batch norm uses its running statistics (its
 * sqrt(var + eps) precomputed), spectral norm is folded into the weights (W / sigma, sigma from the
 * stored power-iteration vectors, computed by layers.ts' own `spectral`). A generator option or a
 * weight this file does not know is an error, never a silently different model.
 */
import * as tf from "./tf.ts";
import { BN_EPSILON, type Pass, spectral } from "./layers.ts";
import { depthFor, type Generator } from "./dcgan.ts";

/** One GraphDef node, as TensorFlow's JSON encoding of the protobuf writes it. */
export interface GraphNode {
  name: string;
  op: string;
  input: string[];
  attr: Record<string, unknown>;
}

export interface GeneratorGraph {
  nodes: GraphNode[];
  /** constant name -> value (float32 or int32), in node order */
  constants: [string, tf.Tensor][];
  /** the placeholder taking z [batch, zSize] and the node giving images [batch, S, S, 3] in [-1, 1] */
  input: string;
  output: string;
}

/** The DcganConfig fields this file knows how to express (the others belong to D). */
const KNOWN_CONFIG = new Set([
  "imageSize",
  "zSize",
  "gConvDim",
  "dConvDim",
  "spectralNorm",
  "selfAttention",
  "dDropout",
  "minibatchStd",
  "residual",
  "dBatchNorm",
]);

const FLOAT = { type: "DT_FLOAT" };
const list = (values: number[]) => ({ list: { i: values.map(String) } });
/** String attrs are bytes, which protobuf's JSON encoding writes in base64. */
const text = (value: string) => ({ s: btoa(value) });
/** The attributes of a 'same'-padded NHWC convolution (forward or transposed). */
const convAttrs = (stride: number) => ({
  T: FLOAT,
  strides: list([1, stride, stride, 1]),
  padding: text("SAME"),
  data_format: text("NHWC"),
  dilations: list([1, 1, 1, 1]),
});

class GraphBuilder {
  readonly nodes: GraphNode[] = [];
  readonly constants: [string, tf.Tensor][] = [];

  constant(name: string, value: tf.Tensor): string {
    const dtype = value.dtype === "int32" ? "DT_INT32" : "DT_FLOAT";
    const shape = { dim: value.shape.map((size) => ({ size: String(size) })) };
    this.nodes.push({
      name,
      op: "Const",
      input: [],
      attr: { dtype: { type: dtype }, value: { tensor: { dtype, tensorShape: shape } } },
    });
    this.constants.push([name, value]);
    return name;
  }

  op(name: string, op: string, input: string[], attr: Record<string, unknown> = {}): string {
    this.nodes.push({ name, op, input, attr });
    return name;
  }
}

/** The eval-mode graph of a built generator whose weights are set. */
export function generatorGraph(generator: Generator): GeneratorGraph {
  const config = generator.config as unknown as Record<string, unknown>;
  for (const key of Object.keys(config)) {
    if (!KNOWN_CONFIG.has(key)) {
      throw new Error(`the TF.js export does not know the generator option '${key}'; teach models/generator_graph.ts`);
    }
  }
  const { gConvDim, zSize, imageSize } = generator.config;
  const depth = depthFor(imageSize);
  const store = new Map(generator.store.entries());
  const used = new Set<string>();
  const pass: Pass = { training: false, spectralNorm: generator.spectralNorm, updates: [] };
  const g = new GraphBuilder();

  /** A stored tensor, taken from the store by its name under G/. */
  const stored = (name: string): tf.Tensor => {
    const variable = store.get(`G/${name}`);
    if (!variable) throw new Error(`the generator has no weight G/${name}`);
    used.add(`G/${name}`);
    return variable;
  };
  /** A weight with spectral norm folded in (its power-iteration vectors are then consumed too). */
  const weight = (name: string, rows: number): string => {
    const w = stored(`${name}/w`);
    if (pass.spectralNorm) { for (const vector of ["sn_u", "sn_v"]) stored(`${name}/${vector}`); }
    return g.constant(`${name}/w`, tf.tidy(() => spectral(generator.store, name, w, pass, rows)));
  };
  const bias = (x: string, name: string) =>
    g.op(`${name}/add_b`, "AddV2", [x, g.constant(`${name}/b`, stored(`${name}/b`))], { T: FLOAT });

  const dense = (x: string, name: string, inputs: number) =>
    bias(
      g.op(`${name}/matmul`, "MatMul", [x, weight(name, inputs)], {
        T: FLOAT,
        transpose_a: { b: false },
        transpose_b: { b: false },
      }),
      name,
    );

  const conv = (x: string, name: string, inChannels: number, kernel: number, withBias: boolean): string => {
    const y = g.op(`${name}/conv`, "Conv2D", [x, weight(name, kernel * kernel * inChannels)], convAttrs(1));
    return withBias ? bias(y, name) : y;
  };

  /** ConvTranspose2d(k4, s2, p1); the output shape follows the batch size of x. */
  const convTranspose = (x: string, name: string, outChannels: number, withBias: boolean): string => {
    const inShape = g.op(`${name}/in_shape`, "Shape", [x], { T: FLOAT, out_type: { type: "DT_INT32" } });
    const doubled = g.op(`${name}/doubled`, "Mul", [
      inShape,
      g.constant(`${name}/scale`, tf.tensor1d([1, 2, 2, 0], "int32")),
    ], { T: { type: "DT_INT32" } });
    const outShape = g.op(`${name}/out_shape`, "AddV2", [
      doubled,
      g.constant(`${name}/channels`, tf.tensor1d([0, 0, 0, outChannels], "int32")),
    ], { T: { type: "DT_INT32" } });
    const y = g.op(
      `${name}/conv_transpose`,
      "Conv2DBackpropInput",
      [outShape, weight(name, 4 * 4 * outChannels), x],
      convAttrs(2),
    );
    return withBias ? bias(y, name) : y;
  };

  /** (x - mean) / sqrt(var + eps) * gamma + beta, as layers.ts' batchNorm in eval mode. */
  const batchNorm = (x: string, name: string): string => {
    const std = tf.tidy(() => stored(`${name}/running_var`).add(BN_EPSILON).sqrt());
    const centred = g.op(`${name}/centred`, "Sub", [
      x,
      g.constant(`${name}/running_mean`, stored(`${name}/running_mean`)),
    ], { T: FLOAT });
    const scaled = g.op(`${name}/normalised`, "RealDiv", [centred, g.constant(`${name}/std`, std)], { T: FLOAT });
    const times = g.op(`${name}/times_gamma`, "Mul", [scaled, g.constant(`${name}/gamma`, stored(`${name}/gamma`))], {
      T: FLOAT,
    });
    return g.op(`${name}/plus_beta`, "AddV2", [times, g.constant(`${name}/beta`, stored(`${name}/beta`))], {
      T: FLOAT,
    });
  };
  const relu = (x: string) => g.op(`${x}/relu`, "Relu", [x], { T: FLOAT });
  const reshape = (x: string, name: string, shape: number[]) =>
    g.op(name, "Reshape", [x, g.constant(`${name}/shape`, tf.tensor1d(shape, "int32"))], {
      T: FLOAT,
      Tshape: { type: "DT_INT32" },
    });

  const residualBlock = (x: string, name: string, channels: number): string => {
    let h = conv(x, `${name}/conv1`, channels, 3, false);
    h = relu(batchNorm(h, `${name}/bn1`));
    h = conv(h, `${name}/conv2`, channels, 3, false);
    return relu(g.op(`${name}/sum`, "AddV2", [x, batchNorm(h, `${name}/bn2`)], { T: FLOAT }));
  };

  const selfAttention = (x: string, name: string, size: number, channels: number): string => {
    const reduced = Math.max(1, Math.floor(channels / 8));
    const n = size * size;
    const query = reshape(conv(x, `${name}/query`, channels, 1, true), `${name}/query/flat`, [-1, n, reduced]);
    const key = reshape(conv(x, `${name}/key`, channels, 1, true), `${name}/key/flat`, [-1, n, reduced]);
    const value = reshape(conv(x, `${name}/value`, channels, 1, true), `${name}/value/flat`, [-1, n, channels]);
    const matmul = (out: string, a: string, b: string, adjY: boolean) =>
      g.op(out, "BatchMatMulV2", [a, b], { T: FLOAT, adj_x: { b: false }, adj_y: { b: adjY } });
    const attention = g.op(`${name}/softmax`, "Softmax", [matmul(`${name}/scores`, query, key, true)], { T: FLOAT });
    const attended = reshape(matmul(`${name}/attended`, attention, value, false), `${name}/attended/image`, [
      -1,
      size,
      size,
      channels,
    ]);
    const gated = g.op(`${name}/gated`, "Mul", [attended, g.constant(`${name}/gamma`, stored(`${name}/gamma`))], {
      T: FLOAT,
    });
    return g.op(`${name}/sum`, "AddV2", [x, gated], { T: FLOAT });
  };

  const input = g.op("z", "Placeholder", [], {
    dtype: FLOAT,
    shape: { shape: { dim: [{ size: "-1" }, { size: String(zSize) }] } },
  });
  let channels = gConvDim * 2 ** (depth - 1);
  let x = reshape(dense(input, "fc", zSize), "fc/image", [-1, 4, 4, channels]);
  let size = 4;
  for (let layer = 1; layer < depth; layer++) {
    channels /= 2;
    size *= 2;
    x = relu(batchNorm(convTranspose(x, `up${layer}`, channels, false), `up${layer}/bn`));
    if (generator.config.residual) x = residualBlock(x, `res${layer}`, channels);
    if (generator.config.selfAttention && layer === depth - 2) x = selfAttention(x, "attn", size, channels);
  }
  const last = g.op(`up${depth}/tanh`, "Tanh", [convTranspose(x, `up${depth}`, 3, true)], { T: FLOAT });
  const output = g.op("images", "Identity", [last], { T: FLOAT });

  const unused = [...store.keys()].filter((name) => !used.has(name));
  if (unused.length) {
    throw new Error(
      `the TF.js export has no place for generator weight(s) ${unused.join(", ")}; teach models/generator_graph.ts`,
    );
  }
  return { nodes: g.nodes, constants: g.constants, input, output };
}
