/**
 * A network's variables by name: trainable weights and non-trainable state (batch-norm running
 * statistics, spectral-norm power-iteration vectors). Names are stable so checkpoints can store
 * tensors by name and in a fixed order.
 */
import * as tf from "./tf.ts";
import type { Rng } from "./rng.ts";

export class ParamStore {
  readonly trainable = new Map<string, tf.Variable>();
  readonly state = new Map<string, tf.Variable>();

  constructor(readonly prefix: string, private readonly rng: Rng) {}

  /** N(mean, std) initialised weight, drawn from the seeded generator (DCGAN: std 0.02). */
  normal(name: string, shape: number[], mean = 0, std = 0.02): tf.Variable {
    return this.get(name, () => {
      const values = this.rng.normals(shape.reduce((a, b) => a * b, 1), std);
      if (mean) { for (let i = 0; i < values.length; i++) values[i] += mean; }
      return tf.tensor(values, shape);
    }, true);
  }

  constant(name: string, shape: number[], value: number, trainable = true): tf.Variable {
    return this.get(name, () => tf.fill(shape, value), trainable);
  }

  /** A unit vector for spectral normalisation's power iteration (state, not trained). */
  unitVector(name: string, length: number): tf.Variable {
    return this.get(name, () => {
      const values = this.rng.normals(length);
      const norm = Math.hypot(...values) || 1;
      return tf.tensor(values.map((v) => v / norm), [1, length]);
    }, false);
  }

  private get(name: string, init: () => tf.Tensor, trainable: boolean): tf.Variable {
    const full = `${this.prefix}/${name}`;
    const map = trainable ? this.trainable : this.state;
    let variable = map.get(full);
    if (!variable) {
      // tfjs variable names are global to the process; ours live in the map, so two models can coexist.
      variable = tf.tidy(() => tf.variable(init(), trainable));
      map.set(full, variable);
    }
    return variable;
  }

  /** Every variable with its name: trainable first, then state, each in creation order. */
  entries(): [string, tf.Variable][] {
    return [...this.trainable.entries(), ...this.state.entries()];
  }

  dispose(): void {
    for (const [, variable] of this.entries()) variable.dispose();
  }
}
