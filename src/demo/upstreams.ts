/**
 * Local stand-ins for the seed documents' upstreams (tcpbin.com, httpbin.org, grpcbin.test.k6.io):
 * TCP echo, TLS echo, mTLS echo, HTTP, HTTPS, gRPC and gRPCs, on loopback with a generated CA.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import type { DemoPki } from './certs.js';

export const DEMO_PORTS = {
  tcp: 14242,
  tls: 14243,
  mtls: 14244,
  http: 18080,
  https: 18443,
  grpc: 19000,
  grpcs: 19001,
} as const;

export type UpstreamName = keyof typeof DEMO_PORTS;

/** The proto file of the demo Echo service (kept in src/, read at run time). */
export function echoProtoPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Works from src/demo (ts) and from dist/src/demo (compiled).
  const candidates = [path.join(here, 'echo.proto'), path.resolve(here, '../../../src/demo/echo.proto')];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`echo.proto not found near ${here}`);
  return found;
}

export function loadEchoPackage(): grpc.GrpcObject {
  const def = protoLoader.loadSync(echoProtoPath(), { keepCase: false, defaults: true });
  return grpc.loadPackageDefinition(def);
}

function echoServer(onSocket: (s: net.Socket | tls.TLSSocket) => void): (s: net.Socket | tls.TLSSocket) => void {
  return (s) => {
    onSocket(s);
    s.on('error', () => s.destroy());
    s.pipe(s);
  };
}

function httpHandler(scheme: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify(
        { scheme, method: req.method, url: req.url, host: req.headers.host ?? null, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') },
        null,
        2,
      );
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': `meshext-demo-${scheme}` });
      res.end(body + '\n');
    });
  };
}

export interface Upstreams {
  ports: Record<UpstreamName, number>;
  close(): Promise<void>;
}

/** Starts every stand-in on `host`; `ports` may override the demo ports (0 = any free port). */
export async function startUpstreams(opts: { pki: DemoPki; host?: string; ports?: Partial<Record<UpstreamName, number>> }): Promise<Upstreams> {
  const host = opts.host ?? '127.0.0.1';
  const want = { ...DEMO_PORTS, ...opts.ports };
  const ca = fs.readFileSync(opts.pki.caCert);
  const cert = fs.readFileSync(opts.pki.serverCert);
  const key = fs.readFileSync(opts.pki.serverKey);
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const closers: Array<() => Promise<void>> = [];
  const ports = {} as Record<UpstreamName, number>;

  const listen = async (name: UpstreamName, server: net.Server): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(want[name], host, () => resolve());
    });
    ports[name] = (server.address() as net.AddressInfo).port;
    server.on('connection', track);
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
  };

  try {
    await listen('tcp', net.createServer(echoServer(() => undefined)));
    await listen('tls', tls.createServer({ cert, key }, echoServer(() => undefined)));
    await listen('mtls', tls.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true }, echoServer(() => undefined)));
    await listen('http', http.createServer(httpHandler('http')));
    await listen('https', https.createServer({ cert, key }, httpHandler('https')));

    const pkg = loadEchoPackage() as unknown as { meshext: { demo: { Echo: grpc.ServiceClientConstructor } } };
    const service = pkg.meshext.demo.Echo.service;
    const reflection = new ReflectionService(protoLoader.loadSync(echoProtoPath()));
    for (const name of ['grpc', 'grpcs'] as const) {
      const server = new grpc.Server();
      server.addService(service, {
        unary: (call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { message: call.request.message, servedBy: name }),
        stream: (call: grpc.ServerDuplexStream<{ message: string }, unknown>) => {
          call.on('data', (m: { message: string }) => call.write({ message: m.message, servedBy: name }));
          call.on('end', () => call.end());
        },
      });
      reflection.addToServer(server);
      const creds = name === 'grpc' ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
      ports[name] = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${host}:${want[name]}`, creds, (err, port) => (err ? reject(err) : resolve(port))),
      );
      closers.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
      closers.push(async () => server.forceShutdown());
    }
  } catch (err) {
    for (const c of closers) await c().catch(() => undefined);
    throw err;
  }

  return {
    ports,
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(closers.map((c) => c().catch(() => undefined)));
    },
  };
}
