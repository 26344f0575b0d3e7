/**
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
