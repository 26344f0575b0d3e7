/**
 * Gradients tfjs lacks or makes slow, registered once for every backend.
 *
 * Zero gradients for the comparison kernels. tfjs registers none, so a second derivative through
 * an op whose gradient uses a comparison (LeakyRelu's does: where(x > 0, dy, alpha * dy)) fails;
 * WGAN-GP's gradient penalty needs exactly that. A comparison is piecewise constant: its
 * derivative is zero wherever it exists.
 */
import * as tf from "./tf.ts";

for (const kernelName of ["Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual"]) {
  if (tf.getGradient(kernelName)) continue;
  tf.registerGradient({
    kernelName,
    inputsToSave: ["a", "b"],
    gradFunc: (_dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => ({
      a: () => tf.zerosLike(saved[0]),
      b: () => tf.zerosLike(saved[1]),
    }),
  });
}

/**
 * Sum and Mean: tfjs' gradients multiply dy by `ones(x.shape)`, a tensor filled on the CPU and
 * uploaded on every call. On WebGPU in Deno that upload (getMappedRange) cost ~1.2 s of a 1.36 s
 * training step at batch 128 on an H100, for the batch-norm means. The same product with the ones
 * made by the backend's Fill kernel stays on the device and gives the same values bit for bit.
 * (Broadcasting dy with broadcastTo would too, but wasm's Tile kernel is 10x slower than this.)
 */
function reductionGradient(kernelName: "Sum" | "Mean") {
  tf.registerGradient({
    kernelName,
    inputsToSave: ["x"],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const expandedShape = x.shape.map((size, axis) => axes.includes(axis) ? 1 : size);
      const spread = () => tf.mul(tf.reshape(dy as tf.Tensor, expandedShape), tf.fill(x.shape, 1, "float32"));
      if (kernelName === "Sum") return { x: spread };
      const reduceSize = axes.reduce((product, axis) => product * x.shape[axis], 1);
      return { x: () => tf.div(spread(), reduceSize) };
    },
  });
}
reductionGradient("Sum");
reductionGradient("Mean");

/**
 * The (leaky) ReLU gradient as one kernel, `dx = x > 0 ? dy : alpha * dy`, where the backend has
 * one (native: oneDNN's eltwise backward on every core); elsewhere tfjs' own formula (greater,
 * where, mul: 8 ms a 128x16x16x32 activation on wasm). Both give the same values.
 */
export const RELU_GRADIENT_KERNEL = "FaceganReluGradient";

for (const kernelName of ["Relu", "LeakyRelu"]) {
  const builtIn = tf.getGradient(kernelName)!;
  tf.registerGradient({
    ...builtIn,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      if (!tf.getKernel(RELU_GRADIENT_KERNEL, tf.getBackend())) return builtIn.gradFunc(dy, saved, attrs);
      const alpha = kernelName === "LeakyRelu" ? attrs.alpha as number : 0;
      return {
        x: () =>
          tf.engine().runKernel(RELU_GRADIENT_KERNEL, { dy: dy as tf.Tensor, x: saved[0] }, { alpha }) as tf.Tensor,
      };
    },
  });
}

/**
 * The ReLU gradient's own gradient, for second derivatives (WGAN-GP's penalty differentiates D's
 * input gradient): linear in dy with the same slope per value, and piecewise constant in x.
 */
tf.registerGradient({
  kernelName: RELU_GRADIENT_KERNEL,
  inputsToSave: ["x"],
  gradFunc: (ddx: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => ({
    dy: () => tf.engine().runKernel(RELU_GRADIENT_KERNEL, { dy: ddx as tf.Tensor, x: saved[0] }, attrs) as tf.Tensor,
    x: () => tf.zerosLike(saved[0]),
  }),
});
