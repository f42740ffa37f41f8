import { isUserError } from '../core/errors';
import { attributeCommand, diffCommand, discoverCommand, exportCommand, importCommand, verifyCommand } from './circuit-commands';
import { canaryCommand, runCommand } from './suite-commands';
import { infoCommand, traceCommand } from './trace';

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

Every command takes --json. Exit codes: 0 success, 1 a check failed, 2 bad input, 3 internal error.`;

type Command = (argv: string[], out: (s: string) => void) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  info: infoCommand,
  trace: traceCommand,
  run: runCommand,
  canary: canaryCommand,
  attribute: attributeCommand,
  discover: discoverCommand,
  verify: verifyCommand,
  diff: diffCommand,
  export: exportCommand,
  import: importCommand,
};

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`circuitlens: unknown command "${cmd}" (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  try {
    return await run(rest, out);
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
