// Every process a benchmark starts goes through here, so that all of them end with the benchmark:
// each runs under `timeout` (a hard upper bound on its life even if this runner is SIGKILLed) and
// `prlimit` (enough file descriptors for 10,000 proxied connections), and is killed on exit, error or Ctrl-C.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';

const live = new Map(); // pid -> {name, child}

/** The hard RLIMIT_NOFILE this runner may hand to children (containers often cap it below 65536). */
export const NOFILE = (() => {
  try {
    const hard = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    return hard === 'unlimited' ? 65536 : Math.min(65536, Number(hard));
  } catch {
    return 1024;
  }
})();
const TAIL = 8192;

function killGroupSync(pid, signal) {
  // `timeout` (without --foreground) leads its own process group, so the group id is its pid.
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

const tempDirs = new Set();

/** Remove dir when the runner exits, however it exits (normal end, error, Ctrl-C). */
export function removeOnExit(dir) {
  installHandlers();
  tempDirs.add(dir);
}

let handlersInstalled = false;
function installHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const pid of live.keys()) killGroupSync(pid, 'SIGKILL');
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping ${live.size} process(es)\n`);
      for (const pid of live.keys()) killGroupSync(pid, 'SIGKILL');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

function tailAppender() {
  let text = '';
  return {
    push(chunk) {
      text += chunk.toString();
      if (text.length > TAIL) text = text.slice(-TAIL);
    },
    get text() {
      return text;
    },
  };
}

/**
 * Start a long-running process (proxy, upstream, client). Returns a handle with `pid` (of the `timeout`
 * wrapper, which is also the process group), `stdout`/`stderr` tails, `exited` (a promise of the exit code),
 * `ended` (how it ended, once it has) and `stop()`.
 */
export function startProcess(name, cmd, args, { maxSeconds, nofile = NOFILE, cwd, env, onStdoutLine } = {}) {
  if (!maxSeconds) throw new Error(`startProcess(${name}): maxSeconds is required`);
  installHandlers();
  const argv = [`--nofile=${nofile}:${nofile}`, 'timeout', '--kill-after=5', `${Math.ceil(maxSeconds)}s`, cmd, ...args];
  const child = spawn('prlimit', argv, { cwd, env: env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const out = tailAppender();
  const err = tailAppender();
  let lineBuf = '';
  child.stdout.on('data', (d) => {
    out.push(d);
    if (onStdoutLine) {
      lineBuf += d.toString();
      let i;
      while ((i = lineBuf.indexOf('\n')) >= 0) {
        onStdoutLine(lineBuf.slice(0, i));
        lineBuf = lineBuf.slice(i + 1);
      }
    }
  });
  child.stderr.on('data', (d) => err.push(d));
  child.stdin.on('error', () => {});
  let ended;
  const exited = new Promise((resolve) => {
    child.on('error', (e) => {
      err.push(`spawn failed: ${e.message}\n`);
      ended ??= `spawn failed: ${e.message}`;
      resolve(-1);
    });
    child.on('exit', (code, signal) => {
      // `timeout` re-raises a signal that killed its command, so a crash (SIGSEGV) shows here as the signal.
      ended = signal ? `killed by ${signal}` : `exit code ${code}`;
      live.delete(child.pid);
      resolve(code ?? (signal ? 128 : -1));
    });
  });
  if (child.pid) live.set(child.pid, { name, child });
  const handle = {
    name,
    pid: child.pid,
    child,
    exited,
    get stdout() {
      return out.text;
    },
    get stderr() {
      return err.text;
    },
    /** How the process ended ('exit code 1', 'killed by SIGSEGV'), or undefined while it runs. */
    get ended() {
      return ended;
    },
    /** SIGTERM the group, then SIGKILL it if still alive after `graceMs`. */
    async stop(graceMs = 3000) {
      if (!live.has(child.pid)) return exited;
      killGroupSync(child.pid, 'SIGTERM');
      const timer = setTimeout(() => killGroupSync(child.pid, 'SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      // Workers that ignore their master's death (none expected) still die with the group.
      killGroupSync(child.pid, 'SIGKILL');
      return code;
    },
  };
  return handle;
}

/** Run a client to completion and return its stdout parsed as JSON (the last non-empty line). */
export async function runClient(name, cmd, args, { maxSeconds, nofile } = {}) {
  const p = startProcess(name, cmd, args, { maxSeconds, nofile });
  const code = await p.exited;
  if (code !== 0) {
    const why = code === 124 || code === 137 ? `timed out after ${maxSeconds}s` : `exit code ${code}`;
    throw new Error(`${name}: ${why}: ${lastLines(p.stderr || p.stdout, 5)}`);
  }
  return p.stdout;
}

/** Last `n` lines of a text, joined with ' | ' for one-line error messages. */
export function lastLines(text, n) {
  return text.trim().split('\n').slice(-n).join(' | ');
}

/** Stop every process still running (used between scenarios in all.mjs and at the end of each one). */
export async function stopAll() {
  await Promise.all([...live.values()].map(({ child }) => {
    killGroupSync(child.pid, 'SIGTERM');
    return new Promise((r) => {
      const t = setTimeout(() => {
        killGroupSync(child.pid, 'SIGKILL');
        r();
      }, 3000);
      child.once('exit', () => {
        clearTimeout(t);
        r();
      });
      if (child.exitCode !== null || child.signalCode !== null) r();
    });
  }));
}

/** Every descendant pid of `pid` (children, grandchildren, ...), read from /proc. */
export function descendants(pid) {
  const parent = new Map();
  for (const ent of readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const stat = readFileSync(`/proc/${ent}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(ent), Number(rest[1]));
    } catch {
      /* exited meanwhile */
    }
  }
  const out = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift();
    for (const [c, pp] of parent) {
      if (pp === p) {
        out.push(c);
        queue.push(c);
      }
    }
  }
  return out;
}

/** VmRSS in KiB of one process, from /proc/PID/status; NaN when it is gone. */
export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Process name (comm) of a pid, '' when gone. */
export function comm(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Summed RSS of the real program(s) under a startProcess handle: the wrapper `timeout` is left out. */
export function treeRssKiB(handle) {
  const pids = descendants(handle.pid).filter((p) => comm(p) !== 'timeout' && comm(p) !== 'prlimit');
  return pids.reduce((s, p) => s + (rssKiB(p) || 0), 0);
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ). */
let clkTck;
function ticksPerSecond() {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU time (user + system, all threads) in ms of one process, from /proc/PID/stat; NaN when it is gone. */
export function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields 14 and 15 (utime, stime); the text after the command name starts at field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

/** Summed CPU time in ms of the real program(s) under a startProcess handle (the wrapper left out, as treeRssKiB does). */
export function treeCpuMs(handle) {
  const pids = descendants(handle.pid).filter((p) => comm(p) !== 'timeout' && comm(p) !== 'prlimit');
  return pids.reduce((s, p) => s + (cpuMs(p) || 0), 0);
}
