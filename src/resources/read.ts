/**
 * Reading one config file safely: never blocks on a FIFO or device (opened non-blocking, checked with
 * fstat on the open descriptor, so a file swapped for a FIFO after a stat is still caught), and never
 * reads more than the size limit plus one byte, whatever the file claims or grows to.
 */
import fs from 'node:fs';
import { describeBytes } from './limits.js';

export type ReadOutcome =
  | { kind: 'text'; text: string }
  /** Not a regular file: `what` names its type. */
  | { kind: 'special'; what: string }
  /** Unreadable or over the limit; `signature` changes whenever the file does (for change detection). */
  | { kind: 'error'; message: string; signature: string };

/** "a FIFO (named pipe)", "a socket"…, or undefined for a regular file or directory. */
export function specialKind(st: fs.Stats): string | undefined {
  if (st.isFile() || st.isDirectory()) return undefined;
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/** Reads a regular file of at most `maxBytes` bytes as UTF-8. */
export function readConfigFile(file: string, maxBytes: number): ReadOutcome {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    return { kind: 'error', message: `cannot read file: ${(e as Error).message}`, signature: (e as NodeJS.ErrnoException).code ?? 'error' };
  }
  try {
    const st = fs.fstatSync(fd);
    const special = specialKind(st);
    if (special || st.isDirectory()) return { kind: 'special', what: special ?? 'a directory' };
    const signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (st.size > maxBytes) return { kind: 'error', message: tooLarge(st.size, maxBytes), signature };
    const chunks: Buffer[] = [];
    let total = 0;
    const buf = Buffer.allocUnsafe(Math.min(maxBytes + 1, Math.max(st.size + 1, 64 * 1024)));
    for (;;) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, maxBytes + 1 - total), null);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      total += n;
      // The file grew past the limit after fstat: stop reading at once.
      if (total > maxBytes) return { kind: 'error', message: tooLarge(total, maxBytes, true), signature };
    }
    return { kind: 'text', text: Buffer.concat(chunks, total).toString('utf8') };
  } catch (e) {
    return { kind: 'error', message: `cannot read file: ${(e as Error).message}`, signature: (e as NodeJS.ErrnoException).code ?? 'error' };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads stdin up to the limit (stdin is what the user asked for, so a pipe is fine here). */
export async function readStdinLimited(maxBytes: number): Promise<ReadOutcome> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of process.stdin) {
    total += (c as Buffer).length;
    if (total > maxBytes) {
      process.stdin.destroy();
      return { kind: 'error', message: tooLarge(total, maxBytes, true), signature: 'stdin' };
    }
    chunks.push(c as Buffer);
  }
  return { kind: 'text', text: Buffer.concat(chunks, total).toString('utf8') };
}

function tooLarge(size: number, maxBytes: number, atLeast = false): string {
  return `file is ${atLeast ? 'more than ' : ''}${atLeast ? maxBytes : size} bytes, over the limit of ${describeBytes(maxBytes)} per file; split it into several files`;
}
