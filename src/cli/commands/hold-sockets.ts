/**
 * `meshext hold-sockets`: keeps the agent's listening sockets open in a process of their own and hands copies to
 * each agent that asks (`meshext run --socket-holder PATH`). In a Kubernetes pod it runs as a sidecar container:
 * when the agent container crashes or is killed, connections and queries wait in these sockets for the restarted
 * agent instead of being refused, as systemd's meshext.socket does on a host.
 */
import type { Command } from 'commander';
import { holdSockets } from '../../net/shared.js';

/** `tcp://ADDR:PORT` or `udp://ADDR:PORT` (IPv6 in brackets). */
function parseListen(text: string): { type: 'tcp' | 'udp'; address: string; port: number } {
  const m = /^(tcp|udp):\/\/(\[[^\]]+\]|[^:]+):(\d+)$/.exec(text.trim());
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) throw new Error(`--listen ${JSON.stringify(text)}: expected tcp://ADDR:PORT or udp://ADDR:PORT with a port 1-65535`);
  return { type: m[1] as 'tcp' | 'udp', address: m[2]!.replace(/^\[|\]$/g, ''), port };
}

export function register(program: Command): void {
  program
    .command('hold-sockets')
    .description('Hold listening sockets open for meshext agents (a sidecar that outlives agent restarts)')
    .requiredOption('--socket <path>', 'unix socket the agents ask (meshext run --socket-holder)')
    .requiredOption('--listen <tcp|udp://addr:port>', 'a socket to hold, repeatable', (v: string, acc: string[] = []) => [...acc, v])
    .action((o: { socket: string; listen: string[] }) => {
      let held: string[];
      try {
        held = holdSockets(o.socket, o.listen.map(parseListen));
      } catch (e) {
        process.stderr.write(`meshext hold-sockets: ${(e as Error).message}\n`);
        process.exit(1);
      }
      process.stdout.write(JSON.stringify({ msg: 'holding sockets', socket: o.socket, sockets: held }) + '\n');
      // Nothing else to do: the serving thread runs until the process ends. A signal ends it at once (the pod is
      // going away; a successor agent elsewhere takes the traffic).
      const keep = setInterval(() => undefined, 1 << 30);
      const stop = (): void => {
        clearInterval(keep);
        process.exit(0);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
