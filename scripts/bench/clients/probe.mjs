#!/usr/bin/env node
// One checked request (lib/probe.mjs) as a process of its own, so that it can run where a target expects
// its clients (meshext-vip: inside the redirected cgroup, resolving the service's name). Prints
// {"ok":true} or {"ok":false,"answer":...,"error":...} and exits 0 either way; a crash exits non-zero.
import { parseArgs } from 'node:util';
import { probe } from '../lib/probe.mjs';

const { values: o } = parseArgs({
  options: {
    protocol: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' },
    ca: { type: 'string' }, 'server-name': { type: 'string', default: 'localhost' },
  },
});
try {
  await probe(o.protocol, Number(o.port), { host: o.host, caFile: o.ca, serverName: o['server-name'] });
  process.stdout.write(JSON.stringify({ ok: true }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, answer: e.answer, error: e.message }) + '\n');
}
