/** Structured logging: JSON lines by default, a readable text form for terminals. */
import { Writable } from 'node:stream';
import { pino, destination, stdTimeFunctions, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';
export type LogFormat = 'json' | 'text';

export interface LogOptions {
  level?: LevelWithSilent;
  format?: LogFormat;
  /** Destination; defaults to stdout (fd 1). */
  stream?: NodeJS.WritableStream;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** Renders one pino JSON line as `TIME LEVEL [component] msg key=value...`. */
export function formatTextLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, component, pid: _pid, hostname: _host, ...rest } = rec;
  const ts = typeof time === 'string' ? time : new Date(typeof time === 'number' ? time : Date.now()).toISOString();
  const lvl = typeof level === 'number' ? (LEVEL_NAMES[level] ?? String(level)) : String(level);
  const parts = [ts, lvl.toUpperCase().padEnd(5)];
  if (component) parts.push(`[${String(component)}]`);
  parts.push(String(msg ?? ''));
  for (const [k, v] of Object.entries(rest)) {
    parts.push(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return parts.join(' ') + '\n';
}

/** Creates the root logger; components take `log.child({ component: 'dns' })`. */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const base = { level, base: undefined, timestamp: stdTimeFunctions.isoTime };
  if ((opts.format ?? 'json') === 'json') {
    return opts.stream ? pino(base, opts.stream) : pino(base, destination({ fd: 1, sync: true }));
  }
  const out = opts.stream ?? process.stdout;
  const text = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line) out.write(formatTextLine(line));
      }
      cb();
    },
  });
  return pino(base, text);
}

/** A logger that drops everything; for tests and library use without a logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
