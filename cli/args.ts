import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from '../core/errors';
import type { Runtime } from '../core/engine/runtime';
import { createRuntime } from '../core/nodejs/load';

/**
 * What `circuitlens <command> --help` prints: the synopsis (also shown under a usage error), what the command does,
 * its options, and what --json prints.
 */
export interface Usage {
  synopsis: string;
  about: string;
  options: [flag: string, text: string][];
  json: string;
}

export function helpText(u: Usage): string {
  const width = Math.max(...u.options.map(([f]) => f.length));
  return [
    `usage: ${u.synopsis}`, '', u.about, '', 'options:',
    ...u.options.map(([f, t]) => `  ${f.padEnd(width)}  ${t}`),
    '  --help, -h'.padEnd(width + 4) + 'this text', '',
    `--json: ${u.json}`,
  ].join('\n');
}

/** `--help` or `-h` among a command's arguments (before a `--`, after which everything is a positional). */
export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

export function usageError(message: string, usage: Usage): UserError {
  return new UserError(`${message}\nusage: ${usage.synopsis}`);
}

/** Parses a command's arguments; unknown flags and missing values become a UserError with the usage line. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, usage: Usage) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw usageError((e as Error).message.replace(/^.*?: /, ''), usage);
  }
}

export function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], flag: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UserError(`${flag} must be one of ${allowed.join(', ')} (got "${value}")`);
  return value as T;
}

export function numberFlag(v: string | undefined, flag: string, fallback: number): number {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new UserError(`${flag} must be a number (got "${v}")`);
  return x;
}

/** --steps: how many points EAP-IG averages gradients over (1 = plain EAP); only with gradient scores. */
export function stepsFlag(v: string | undefined, method: string): number {
  if (v === undefined) return 1;
  if (method !== 'gradient') throw new UserError('--steps applies to gradient attribution only (--method gradient, or --scores gradient for discover)');
  const k = Number(v);
  if (!Number.isInteger(k) || k < 1 || k > 1024) throw new UserError(`--steps must be a whole number from 1 to 1024 (got "${v}")`);
  return k;
}

/**
 * The runtime a CLI command runs on, from its --runtime flag: onnxruntime-node with denormals flushed (the CLI owns
 * its process; see OrtNodeRuntime), or onnxruntime-web's WASM.
 */
export function cliRuntime(value: string | undefined): Runtime {
  return createRuntime(oneOf(value, ['node', 'wasm'] as const, '--runtime', 'node'), { flushDenormals: true });
}

/** Options every command that loads a model shares, as their --help lists them. */
export const RUNTIME_OPTION: [string, string] = ['--runtime node|wasm', 'onnxruntime-node (native, default) or onnxruntime-web\'s WASM'];
export const JSON_OPTION: [string, string] = ['--json', 'machine output on stdout (nothing else there)'];
export const FORCE_OPTION: [string, string] = ['--force', 'replace the output file when it exists (otherwise: exit 2)'];
