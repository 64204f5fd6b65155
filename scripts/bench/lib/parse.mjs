// Parsers for the Debian load generators' output (pure; tested in test/unit/bench-stats.test.ts).
import { percentileSorted } from './stats.mjs';

const UNIT_US = { us: 1, ms: 1e3, s: 1e6, m: 60e6 };

/** A wrk duration such as `812.00us`, `1.25ms` or `2.01s` in microseconds. */
export function wrkDurationUs(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) throw new Error(`wrk: cannot read duration "${text}"`);
  // Round to nanoseconds so decimal input does not come back with binary floating-point noise.
  return Math.round(Number(m[1]) * UNIT_US[m[2]] * 1000) / 1000;
}

/**
 * From `wrk --latency` output: {rps, p50us, p99us, errors, requests} (requests: answers completed in the
 * run, non-2xx included). Throws when a figure is missing.
 */
export function parseWrk(text) {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p50 = /^\s+50%\s+(\S+)/m.exec(text);
  const p99 = /^\s+99%\s+(\S+)/m.exec(text);
  if (!rps || !p50 || !p99) throw new Error(`wrk: unexpected output: ${text.trim().split('\n').slice(-4).join(' | ')}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const requests = /^\s*(\d+) requests in /m.exec(text);
  const errors = (sock ? sock.slice(1).reduce((s, x) => s + Number(x), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return { rps: Number(rps[1]), p50us: wrkDurationUs(p50[1]), p99us: wrkDurationUs(p99[1]), errors, requests: requests ? Number(requests[1]) : NaN };
}

/**
 * From h2load's summary and its --log-file (tab-separated: start µs, status, time-to-response µs):
 * {rps, p50us, p99us, failed, total, succeeded, non2xx, dataBytes}. Requests with a status other than 2xx count
 * as failed; succeeded is h2load's own count (2xx and 3xx); non2xx the answers with a 3xx, 4xx or 5xx status
 * (from its "status codes" line, NaN if absent); dataBytes the DATA payload received (NaN if absent).
 */
export function parseH2load(summary, log) {
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(summary);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(summary);
  if (!rps || !req) throw new Error(`h2load: unexpected output: ${summary.trim().split('\n').slice(-4).join(' | ')}`);
  // "traffic: 4.59MB (4817830) total, 1.13MB (1188630) headers (space savings 93.34%), 2.65MB (2776238) data"
  const data = /^traffic:.*\((\d+)\) data/m.exec(summary);
  const codes = /^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(summary);
  const times = [];
  let bad = 0;
  for (const line of log.split('\n')) {
    const f = line.split('\t');
    if (f.length < 3) continue;
    if (!/^2\d\d$/.test(f[1])) bad++;
    times.push(Number(f[2]));
  }
  times.sort((a, b) => a - b);
  return {
    rps: Number(rps[1]),
    p50us: percentileSorted(times, 50),
    p99us: percentileSorted(times, 99),
    failed: Number(req[5]) + Number(req[6]) + bad,
    total: Number(req[1]),
    succeeded: Number(req[4]),
    non2xx: codes ? Number(codes[1]) + Number(codes[2]) + Number(codes[3]) : NaN,
    dataBytes: data ? Number(data[1]) : NaN,
  };
}
