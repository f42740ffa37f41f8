import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from '../core/errors';
import type { Runtime } from '../core/engine/runtime';
import { createRuntime } from '../core/node/load';

/** Parses a command's arguments; unknown flags and missing values become a UserError with the usage line. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UserError(`${(e as Error).message.replace(/^.*?: /, '')}\nusage: ${usage}`);
  }
}

export function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], flag: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UserError(`${flag} must be one of ${allowed.join(', ')} (got "${value}")`);
  return value as T;
}

/**
 * The runtime a CLI command runs on, from its --runtime flag: onnxruntime-node with denormals flushed (the CLI owns
 * its process; see OrtNodeRuntime), or onnxruntime-web's WASM.
 */
export function cliRuntime(value: string | undefined): Runtime {
  return createRuntime(oneOf(value, ['node', 'wasm'] as const, '--runtime', 'node'), { flushDenormals: true });
}
