/** `meshext run`: the agent. Flags override `MESHEXT_*` environment variables, which override defaults. */
import type { Command } from 'commander';
import { createLogger } from '../../log.js';
import { Agent } from '../../agent/agent.js';
import { DEFAULTS, envName, optionsFromEnv, resolveConfig, type OptionName, type RawOptions } from '../../agent/config.js';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function register(program: Command): void {
  const d = DEFAULTS;
  const env = (o: OptionName): string => `(env ${envName(o)})`;
  program
    .command('run')
    .description('run the agent: DNS resolver, proxy and eBPF redirect for the resources in --config (and the Kubernetes API with --source kubernetes)')
    .option('--config <dir>', `resource directory or file; repeatable ${env('config')}`, collect)
    .option('--source <kind>', `files|kubernetes: also list and watch Kuma resources in the Kubernetes API (default ${d.source}) ${env('source')}`)
    .option('--kubeconfig <path>', `kubeconfig for --source kubernetes (default: in-cluster service account) ${env('kubeconfig')}`)
    .option('--system-namespace <ns>', `namespace of Kuma's MeshExternalServices, HostnameGenerators and Secrets (default ${d.systemNamespace}) ${env('systemNamespace')}`)
    .option('--cgroup <path>', `cgroup2 directory to attach the BPF programs to (default: the cgroup2 mount root) ${env('cgroup')}`)
    .option('--redirect <mode>', `eBPF redirect: auto|on|off (default ${d.redirect}) ${env('redirect')}`)
    .option('--dns <mode>', `embedded DNS resolver: on|off (default ${d.dns}) ${env('dns')}`)
    .option('--proxy-address <ip>', `address the transparent proxy listens on (default ${d.proxy.address}) ${env('proxyAddress')}`)
    .option('--proxy-port <port>', `transparent proxy port (default ${d.proxy.port}) ${env('proxyPort')}`)
    .option('--dns-address <ip>', `resolver address (default ${d.dnsListen.address}) ${env('dnsAddress')}`)
    .option('--dns-port <port>', `resolver port (default ${d.dnsListen.port}) ${env('dnsPort')}`)
    .option('--dns-upstream <ip[:port]>', `upstream nameserver, repeatable (default: from resolv.conf) ${env('dnsUpstream')}`, collect)
    .option('--resolv-conf <path>', `resolv.conf to read upstreams from (default ${d.resolvConf}) ${env('resolvConf')}`)
    .option('--ip-family-mode <mode>', `dualstack|ipv4: AAAA answers for IPv4 VIPs (default ${d.ipFamilyMode}) ${env('ipFamilyMode')}`)
    .option('--admin <host:port>', `admin API address, loopback only (default ${d.admin.address}:${d.admin.port}) ${env('admin')}`)
    .option('--socket-holder <path>', `take listening sockets from a holder (meshext hold-sockets) at this unix socket ${env('socketHolder')}`)
    .option('--admin-socket <path>', `this agent's own admin unix socket, for probes (default ${d.adminSocket}; off: none) ${env('adminSocket')}`)
    .option('--state-dir <dir>', `persisted VIPs (default ${d.stateDir}) ${env('stateDir')}`)
    .option('--access-log-dir <dir>', `MeshAccessLog files are written only under this directory, besides /dev/stdout and /dev/stderr (default ${d.accessLogDir}) ${env('accessLogDir')}`)
    .option('--vip-cidr <cidr>', `VIP range (default ${d.vipCidr}) ${env('vipCidr')} or KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR`)
    .option('--zone <name>', `zone name for templates and KRIs (default ${d.zone}) ${env('zone')}`)
    .option('--pin-root <dir>', `bpffs directory for pinned maps and links (default ${d.pinRoot}) ${env('pinRoot')}`)
    .option('--log-format <fmt>', `json|text (default: text on a terminal, else json) ${env('logFormat')}`)
    .option('--log-level <level>', `trace|debug|info|warn|error (default ${d.logLevel}) ${env('logLevel')}`)
    .option('--drain-time <duration>', `how long SIGTERM waits for connections to finish (default 30s) ${env('drainTime')}`)
    .option('--connect-timeout <duration>', `upstream connect timeout (default 5s) ${env('connectTimeout')}`)
    .option('--skip-default-generators <bool>', `do not create Kuma's default hostname generators ${env('skipDefaultGenerators')}`)
    .option('--max-connections <n|auto>', `client connections served at once, over it new ones are reset (default auto: from the descriptor limit; 0: no cap) ${env('maxConnections')}`)
    .option('--http-header-timeout <duration>', `time an HTTP/1.x client has to send a request head from its first byte, 408 after (default 10s) ${env('httpHeaderTimeout')}`)
    .option('--node-name <name>', `this node's name, in host units' SPIFFE IDs and to read this node's pods (default: the hostname) ${env('nodeName')}`)
    .option('--identity-mesh <mesh>', `mesh of host units' SPIFFE IDs (default ${d.identityMesh}) ${env('identityMesh')}`)
    .option('--identity-map <file>', `YAML list of {cgroup: <path glob>, spiffeID} that overrides the workload identity rules ${env('identityMap')}`)
    .option('--data-threads <n>', `I/O threads of the engine (the data plane) (default ${d.dataThreads}) ${env('dataThreads')}`)
    .action(async (flags: Record<string, string | string[] | undefined>) => {
      const flagOptions: RawOptions = {};
      for (const [k, v] of Object.entries(flags)) if (v !== undefined) (flagOptions as Record<string, unknown>)[k] = v;
      const envOptions = optionsFromEnv(process.env);
      if (envOptions.logFormat === undefined && flagOptions.logFormat === undefined) envOptions.logFormat = process.stdout.isTTY ? 'text' : 'json';
      const cfg = resolveConfig([
        { name: 'env', options: envOptions },
        { name: 'flags', options: flagOptions },
      ]);
      const log = createLogger({ format: cfg.logFormat, level: cfg.logLevel });
      const agent = new Agent(cfg, log);

      let signals = 0;
      const onSignal = (sig: NodeJS.Signals): void => {
        signals++;
        if (signals === 1) {
          log.info({ signal: sig }, 'shutting down');
          agent.shutdown({ drainMs: cfg.drainTimeMs }).then(
            () => process.exit(0),
            (err: unknown) => {
              log.error({ err: (err as Error).message }, 'shutdown failed');
              process.exit(1);
            },
          );
        } else if (signals === 2) {
          void agent.forceStop();
        } else {
          process.exit(1);
        }
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      process.on('SIGHUP', () => void agent.reload('SIGHUP'));
      // logrotate's postrotate: MeshAccessLog files are reopened at their paths (a reload also reopens a moved one).
      process.on('SIGUSR1', () => agent.reopenLogs());
      // A bug must not leave a half-working proxy behind: log it structured and exit so the
      // supervisor (systemd, kubelet) restarts us; pinned BPF links keep redirection in place meanwhile.
      const crash = (kind: string) => (err: unknown): void => {
        log.fatal({ err: err instanceof Error ? err.stack : String(err) }, `${kind}; exiting`);
        process.exit(70);
      };
      process.on('uncaughtException', crash('uncaught exception'));
      process.on('unhandledRejection', crash('unhandled promise rejection'));

      try {
        await agent.start();
      } catch (err) {
        const e = err as { message?: string; code?: string };
        log.fatal({ err: e.message, code: e.code }, 'cannot start');
        await agent.shutdown({ drainMs: 0 }).catch(() => undefined);
        process.exit(1);
      }
    });
}
