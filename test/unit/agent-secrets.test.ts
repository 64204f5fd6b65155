// No byte of a secret value reaches an error, a log line, /config_dump or `meshext validate`: checked with
// a canary value in every way a secret can be wrong.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { startTestAgent } from '../helpers/agent.js';

// Base64 characters, so a clipped echo of any part would be found; '!' makes the value invalid.
const CANARY = 'Zq7Xv9Kp3Lw2Rt8Ym4Nc6Hb1Jd5Fg0Sx';
const CANARY_B64 = Buffer.from(CANARY).toString('base64');

const files: Record<string, string> = {
  'secrets.yaml': [
    `type: Secret\nname: bad-universal\nmesh: default\ndata: "${CANARY}!"\n`,
    `apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad-kube\n  labels: {kuma.io/mesh: default}\ntype: system.kuma.io/secret\ndata:\n  value: "${CANARY}!!"\n`,
    `type: Secret\nname: good\nmesh: default\ndata: ${CANARY_B64}\n`,
    `type: Secret\nname: bad-escape\nmesh: default\ndata: "${CANARY}\\q"\n`,
  ].join('---\n'),
  // A YAML error whose library message would quote the rest of the line.
  'broken-secret.yaml': `type: Secret\nname: broken\nmesh: default\ndata: |${CANARY}\n  more\n`,
  'services.yaml': [
    `type: MeshExternalService\nname: inline-key\nmesh: default\nspec:\n  match: {port: 443}\n  endpoints: [{address: 10.1.1.1, port: 443}]\n  tls:\n    enabled: true\n    verification:\n      mode: SkipAll\n      clientCert: {inline: "${CANARY}!"}\n      clientKey: {inline: "${CANARY}!"}\n`,
    `type: MeshExternalService\nname: string-key\nmesh: default\nspec:\n  match: {port: 443}\n  endpoints: [{address: 10.1.1.2, port: 443}]\n  tls:\n    enabled: true\n    verification:\n      mode: SkipAll\n      clientCert: {inlineString: "${CANARY}"}\n      clientKey: {inlineString: "${CANARY}"}\n`,
    `type: MeshExternalService\nname: secret-key\nmesh: default\nspec:\n  match: {port: 443}\n  endpoints: [{address: 10.1.1.3, port: 443}]\n  tls:\n    enabled: true\n    verification:\n      mode: SkipAll\n      clientCert: {secret: good}\n      clientKey: {secret: good}\n`,
  ].join('---\n'),
};

/** Every 6-character window of the canary (and of its base64 form) that appears in `text`. */
function leaks(text: string): string[] {
  const found: string[] = [];
  for (const s of [CANARY, CANARY_B64]) for (let i = 0; i + 6 <= s.length; i++) if (text.includes(s.slice(i, i + 6))) found.push(s.slice(i, i + 6));
  return found;
}

test('a canary secret value appears in no log line, dump or error of the agent', async (t) => {
  const a = await startTestAgent(t, files);
  const dump = await (await fetch(`http://127.0.0.1:${a.adminPort}/config_dump`)).text();
  const stats = await (await fetch(`http://127.0.0.1:${a.adminPort}/stats`)).text();
  const clusters = await (await fetch(`http://127.0.0.1:${a.adminPort}/clusters?format=json`)).text();
  await a.agent.reload('test');
  const log = a.log.lines().map((l) => JSON.stringify(l)).join('\n');
  // The bad resources were really rejected, with messages that say why.
  t.regex(log, /must be valid base64 \(the value is secret and not shown\)/);
  t.regex(log, /in body must be of type byte \(base64; the value is not shown/);
  t.regex(dump, /bad-universal/);
  t.regex(dump, /broken-secret\.yaml/);
  t.deepEqual(leaks(log), [], 'log');
  t.deepEqual(leaks(dump), [], '/config_dump');
  t.deepEqual(leaks(stats + clusters), [], '/stats, /clusters');
});

test('a canary secret value appears nowhere in meshext validate output', async (t) => {
  const a = await startTestAgent(t, {});
  const fs = await import('node:fs');
  const path = await import('node:path');
  for (const [n, c] of Object.entries(files)) fs.writeFileSync(path.join(a.configDir, n), c);
  for (const output of ['text', 'json']) {
    const r = spawnSync(process.execPath, ['bin/meshext.js', 'validate', '-o', output, a.configDir], { encoding: 'utf8', timeout: 20_000 });
    t.is(r.status, 1);
    t.regex(r.stdout, /bad-kube/);
    t.deepEqual(leaks(r.stdout + r.stderr), [], `validate -o ${output}`);
  }
});
