import { isUserError } from '../core/errors';
import { helpText, wantsHelp, type Usage } from './args';
import { ATTENTION_USAGE, attentionCommand } from './commands/attention';
import { ATTRIBUTE_USAGE, attributeCommand } from './commands/attribute';
import { BISECT_USAGE, bisectCommand } from './commands/bisect';
import { CANARY_USAGE, canaryCommand } from './commands/canary';
import { COMPARE_USAGE, compareCommand } from './commands/compare';
import { DIFF_USAGE, diffCommand } from './commands/diff';
import { DISCOVER_USAGE, discoverCommand } from './commands/discover';
import { EXPORT_USAGE, exportCommand } from './commands/export';
import { IMPORT_USAGE, importCommand } from './commands/import';
import { INFO_USAGE, infoCommand } from './commands/info';
import { PROTECT_USAGE, protectCommand } from './commands/protect';
import { PRUNE_USAGE, pruneCommand } from './commands/prune';
import { REDUNDANCY_USAGE, redundancyCommand } from './commands/redundancy';
import { RELATE_USAGE, relateCommand } from './commands/relate';
import { RUN_USAGE, runCommand } from './commands/run';
import { SENSITIVITY_USAGE, sensitivityCommand } from './commands/sensitivity';
import { SWEEP_USAGE, sweepCommand } from './commands/sweep';
import { TRACE_USAGE, traceCommand } from './commands/trace';
import { VERIFY_USAGE, verifyCommand } from './commands/verify';
import { WORKER_USAGE, workerCommand } from './commands/worker';

const USAGE = `circuitlens — mechanistic interpretability for ONNX language models

usage: circuitlens <command> [options]

commands:
  info MODEL                     architecture, dimensions and hook map of a model
  trace MODEL --prompt TEXT      run a prompt, record hooks (--hooks GLOB), ablate nodes (--ablate a1.h2,m0)
  run SUITE                      metrics of a prompt suite, optionally with nodes ablated
  canary [PATHS...]              run canary checks (*.canary.yaml); --reporter text|json|junit|sarif
  attribute SUITE                score every head and MLP (or --level edge: every edge) by the metric drop
                                 when it is ablated (--method patching) or its gradient estimate (gradient)
  discover SUITE --out F         find a small faithful circuit (--method greedy|acdc, --level node|edge) and
                                 write F.circuit.json
  verify CIRCUIT                 faithfulness (several metrics), necessity, minimality, specificity, CPR/CMD
  diff SUITE                     differential activation, task vs control prompts
  export CIRCUIT --format F      circuit as EAP-IG / MIB JSON (eap-ig: every edge, in_graph flags) or as a
                                 Neuronpedia attribution graph (neuronpedia: one node per head and MLP)
  import FILE --format F         EAP-IG / MIB or Neuronpedia graph JSON → .circuit.json (--out F.circuit.json)
  bisect GOOD BAD --canary F     the tensors that broke a canary check: BAD with GOOD's tensors copied in, by
                                 (layer, component) group, then bisected to a minimal set (a heuristic)
  sweep SUITE                    metric and accuracy per value of a swept variable (suite with sweep:), with
                                 bootstrap intervals, and n* where accuracy crosses --level
  compare A B --suite S          two checkpoints of one architecture: metrics, node scores and a circuit
                                 (--circuit C: faithfulness on each, re-discovered on B, Jaccard) from A to B
  protect CIRCUIT --out F        per-parameter learning-rate scales (--scale S) that protect a circuit during
                                 fine-tuning, as safetensors (--invert: all but the circuit's); --snippet prints
                                 the PyTorch code that applies them
  prune SUITE                    pruning curves: metric, accuracy and KL as attention and MLP weights are pruned
                                 (--sparsity LIST; --strategy magnitude|outside-circuit|layer-waves; --circuit C)
  attention SUITE                per head: attention entropy per position, and the metric when its softmax
                                 temperature changes (--head a1.h0, --temperatures 0.5,1,2)
  redundancy SUITE               backups: the top K nodes ablated alone and in every pair, interaction under
                                 every metric (--top K, --nodes IDS, --metric M ranks the pairs)
  relate C1 C2 …                 how circuits relate: Jaccard overlap, union and intersection faithfulness on
                                 each circuit's suite, hub nodes
  sensitivity SUITE --quantize Q quantization sensitivity: metric, accuracy, KL and circuit faithfulness with the
                                 weights of each scope (all, attn, mlp, embed, circuit:C, outside:C) fake-quantized
  worker --broker URL            take chunks of batched analyses (attribute, discover, verify, redundancy, sweep,
                                 prune, sensitivity --broker URL) from Redis and compute them; run one or more per
                                 machine

Every command takes --json; circuitlens <command> --help prints its options and what --json prints.
Output files (--out) are not replaced unless --force is given.
Exit codes: 0 success, 1 a check failed, 2 bad input, 3 internal error.`;

/** A command: runs on its arguments (after the command name), prints through `out`, returns the exit code. */
type Command = (argv: string[], out: (s: string) => void) => Promise<number>;

/** Every command, in one table: its function and its --help. Each lives in commands/<name>.ts. */
const COMMANDS: Record<string, { run: Command; usage: Usage }> = {
  info: { run: infoCommand, usage: INFO_USAGE },
  trace: { run: traceCommand, usage: TRACE_USAGE },
  run: { run: runCommand, usage: RUN_USAGE },
  canary: { run: canaryCommand, usage: CANARY_USAGE },
  attribute: { run: attributeCommand, usage: ATTRIBUTE_USAGE },
  discover: { run: discoverCommand, usage: DISCOVER_USAGE },
  verify: { run: verifyCommand, usage: VERIFY_USAGE },
  diff: { run: diffCommand, usage: DIFF_USAGE },
  export: { run: exportCommand, usage: EXPORT_USAGE },
  import: { run: importCommand, usage: IMPORT_USAGE },
  bisect: { run: bisectCommand, usage: BISECT_USAGE },
  sweep: { run: sweepCommand, usage: SWEEP_USAGE },
  compare: { run: compareCommand, usage: COMPARE_USAGE },
  protect: { run: protectCommand, usage: PROTECT_USAGE },
  prune: { run: pruneCommand, usage: PRUNE_USAGE },
  attention: { run: attentionCommand, usage: ATTENTION_USAGE },
  redundancy: { run: redundancyCommand, usage: REDUNDANCY_USAGE },
  relate: { run: relateCommand, usage: RELATE_USAGE },
  sensitivity: { run: sensitivityCommand, usage: SENSITIVITY_USAGE },
  worker: { run: workerCommand, usage: WORKER_USAGE },
};

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!command) {
    process.stderr.write(`circuitlens: unknown command "${cmd}" (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  if (wantsHelp(rest)) {
    out(helpText(command.usage));
    return 0;
  }
  try {
    return await command.run(rest, out);
  } catch (e) {
    if (isUserError(e)) {
      process.stderr.write(`circuitlens ${cmd}: ${e.located}\n`);
      return 2;
    }
    process.stderr.write(`circuitlens ${cmd}: internal error: ${(e as Error).message ?? e}\n`);
    if (process.env.CIRCUITLENS_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    else process.stderr.write('(set CIRCUITLENS_DEBUG=1 to see the stack trace, and please report it)\n');
    return 3;
  }
}

// A closed pipe (`circuitlens info M | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(0); });

/** Runs the command line of this process. The bin (bin/circuitlens.js) calls it, whatever name it was started by:
 * `npx circuitlens`, a global or linked install, and `node bin/circuitlens.js` all run through a link or a copy. */
export function start(): void {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}

if (require.main === module) start();
