/** A real pino logger whose JSON lines a test can read back. */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

export interface CapturedLog {
  log: Logger;
  /** Every line written so far, parsed. */
  lines(): Array<Record<string, unknown>>;
  /** Lines whose `msg` matches. */
  find(msg: RegExp): Array<Record<string, unknown>>;
}

export function captureLog(level: 'debug' | 'info' = 'info'): CapturedLog {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const log = createLogger({ level, stream });
  const lines = (): Array<Record<string, unknown>> => raw.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, find: (msg) => lines().filter((l) => msg.test(String(l.msg))) };
}
