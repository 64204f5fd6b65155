/**
 * `grpc-list HOST:PORT [--tls]`: lists a server's services through gRPC reflection, like
 * `grpcurl -plaintext HOST:PORT list` in the seed documents (grpcurl is not packaged for Debian).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const require = createRequire(import.meta.url);

export async function listServices(target: string, opts: { tls?: boolean; timeoutMs?: number } = {}): Promise<string[]> {
  const pkgDir = path.dirname(require.resolve('@grpc/reflection/package.json'));
  const def = protoLoader.loadSync(path.join(pkgDir, 'build/proto/grpc/reflection/v1alpha/reflection.proto'), { keepCase: true });
  const root = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: { v1alpha: { ServerReflection: grpc.ServiceClientConstructor } } };
  };
  const creds = opts.tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
  const client = new root.grpc.reflection.v1alpha.ServerReflection(target, creds);
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const call = (client as unknown as { ServerReflectionInfo(o: { deadline: number }): grpc.ClientDuplexStream<unknown, unknown> }).ServerReflectionInfo({
        deadline: Date.now() + (opts.timeoutMs ?? 5000),
      });
      call.on('data', (msg: { list_services_response?: { service: Array<{ name: string }> }; error_response?: { error_message: string } }) => {
        if (msg.error_response) reject(new Error(msg.error_response.error_message));
        else resolve((msg.list_services_response?.service ?? []).map((s) => s.name).sort());
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write('usage: grpc-list HOST:PORT [--tls]\n');
    process.exit(2);
  }
  listServices(target, { tls: process.argv.includes('--tls') }).then(
    (names) => process.stdout.write(names.join('\n') + '\n'),
    (err: Error) => {
      process.stderr.write(`grpc-list: ${target}: ${err.message}\n`);
      process.exit(1);
    },
  );
}
