/**
 * `meshext probe [ready|live]`: asks one agent, over its own admin unix socket, whether it is ready (/ready) or
 * alive (/healthz): exit 0 if so, 1 if not or not answering. Kubernetes probes use it because the TCP admin port
 * is shared with a successor agent while a restart hands over, so a TCP probe could be answered by the other one.
 */
import type { Command } from 'commander';
import http from 'node:http';
import { DEFAULT_ADMIN_SOCKET } from '../../agent/config.js';

const PATHS = { ready: '/ready', live: '/healthz' } as const;

export function register(program: Command): void {
  program
    .command('probe')
    .argument('[what]', 'ready (GET /ready) or live (GET /healthz)', 'ready')
    .description("Exit 0 if the agent behind the admin socket is ready (or alive), 1 if not or not answering")
    .option('--admin-socket <path>', "the agent's admin unix socket", process.env.MESHEXT_ADMIN_SOCKET || DEFAULT_ADMIN_SOCKET)
    .option('--timeout <ms>', 'how long to wait for an answer', '2000')
    .action(async (what: string, o: { adminSocket: string; timeout: string }) => {
      if (what !== 'ready' && what !== 'live') {
        process.stderr.write(`meshext probe: expected ready or live, got "${what}"\n`);
        process.exitCode = 2;
        return;
      }
      const timeout = Number(o.timeout) > 0 ? Number(o.timeout) : 2000;
      const answer = await new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
        const req = http.get({ socketPath: o.adminSocket, path: PATHS[what], headers: { host: 'localhost' }, timeout }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
        });
        req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeout} ms`), { code: 'ETIMEDOUT' })));
        req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: `${o.adminSocket}: ${e.code ?? e.message}` }));
      });
      if ('error' in answer) {
        process.stderr.write(`meshext probe ${what}: ${answer.error}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${answer.body}\n`);
      process.exitCode = answer.status === 200 ? 0 : 1;
    });
}
