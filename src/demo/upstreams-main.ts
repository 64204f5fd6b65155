/** Runs the demo stand-in upstreams as their own process: `node upstreams-main.js PKI_DIR [HOST]`. */
import { ensurePki } from './certs.js';
import { startUpstreams } from './upstreams.js';

const [dir, host] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: upstreams-main.js PKI_DIR [HOST]\n');
  process.exit(2);
}
const ups = await startUpstreams({ pki: ensurePki(dir), ...(host ? { host } : {}) });
process.stdout.write(`READY ${JSON.stringify(ups.ports)}\n`);
const stop = (): void => void ups.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
