// Long work on stderr, never on stdout (so --json stays clean): on a terminal one line redrawn in place, otherwise
// (CI logs, pipes) a plain line every few seconds. Phases that end within QUIET_MS print nothing, so quick
// commands stay quiet. CIRCUITLENS_PROGRESS=off silences it; =always prints every step at once (for tests).
import { describeProgress, type ProgressEvent, type ProgressSink } from '../core/analysis/progress';

const QUIET_MS = 2000;
const TTY_EVERY_MS = 100;
const LOG_EVERY_MS = 5000;

export function stderrProgress(command: string, stream: NodeJS.WriteStream = process.stderr, mode = process.env.CIRCUITLENS_PROGRESS): ProgressSink {
  if (mode === 'off') return () => {};
  const always = mode === 'always';
  const tty = !always && !!stream.isTTY;
  let shown = false;
  let last = -Infinity;
  return (e: ProgressEvent) => {
    if (e.done === 0) { shown = false; last = -Infinity; }
    const finished = e.done >= e.total;
    const due = always || (e.elapsedMs >= QUIET_MS && e.elapsedMs - last >= (tty ? TTY_EVERY_MS : LOG_EVERY_MS));
    if (!due && !(finished && shown)) return;
    last = e.elapsedMs;
    shown = true;
    const line = `circuitlens ${command}: ${describeProgress(e)}`;
    if (tty) stream.write(`\r\x1b[K${line}${finished ? '\n' : ''}`);
    else stream.write(line + '\n');
  };
}
