// MeshAccessLog: the format parser (src/resources/accesslog-format.ts), Kuma's merge of `backends` (lists are
// replaced, so the last entry that sets them wins) and the plan form (src/snapshot/accesslog.ts).
import test from 'ava';
import { parseResourceText, type MeshAccessLogResource, type MeshExternalServiceResource } from '../../../src/resources/index.js';
import { parseFormat } from '../../../src/resources/accesslog-format.js';
import { accessLogPathProblem, effectiveAccessLog, planAccessLog } from '../../../src/snapshot/accesslog.js';
import { ipEp, svc } from '../../helpers/proxy.js';

const MES = `
type: MeshExternalService
name: web
mesh: default
spec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 80}]}
`;

function mes(): MeshExternalServiceResource {
  return parseResourceText(MES, 'mes.yaml').resources[0] as MeshExternalServiceResource;
}

function mal(name: string, to: string): MeshAccessLogResource {
  const r = parseResourceText(`type: MeshAccessLog\nname: ${name}\nmesh: default\nspec:\n  to: [${to}]\n`, `${name}.yaml`);
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.resources[0] as MeshAccessLogResource;
}

const file = (path: string): string => `{type: File, file: {path: ${path}}}`;

test('format: literals, operators with header, alternative and length, %% and Kuma constants', (t) => {
  t.deepEqual(parseFormat('a%%b %REQ(X-ENVOY-ORIGINAL-PATH?:PATH):10% %KUMA_MESH% %KUMA_SOURCE_ADDRESS%'), {
    tokens: [{ text: 'a%b ' }, { op: 'REQ', name: 'x-envoy-original-path', alt: ':path', max: 10 }, { text: ' ' }, { constant: 'KUMA_MESH' }, { text: ' ' }, { op: 'DOWNSTREAM_REMOTE_ADDRESS' }],
  });
  t.regex((parseFormat('%UPSTREAM_LOCAL_ADDRESS%') as { error: string }).error, /^unknown command operator %UPSTREAM_LOCAL_ADDRESS%: meshext fills START_TIME/);
  t.regex((parseFormat('50% off') as { error: string }).error, /unterminated command operator/);
  t.deepEqual(parseFormat('%START_TIME(%Y %s.%3f)%'), { tokens: [{ op: 'START_TIME', name: '%Y %s.%3f' }] });
  t.regex((parseFormat('%DURATION(x)%') as { error: string }).error, /DURATION takes no argument/);
  t.regex((parseFormat('%REQ(A?B?C)%') as { error: string }).error, /HEADER or HEADER\?ALTERNATIVE/);
});

test('merge: the MeshExternalService entry replaces the Mesh one\'s backends; backends: [] turns logging off', (t) => {
  const meshWide = mal('mesh-wide', `{targetRef: {kind: Mesh}, default: {backends: [${file('/var/log/all.log')}]}}`);
  const web = mal('web', `{targetRef: {kind: MeshExternalService, name: web}, default: {backends: [${file('/dev/stdout')}, ${file('/var/log/web.log')}]}}`);
  t.deepEqual(effectiveAccessLog(mes(), [web, meshWide])?.backends.map((b) => b.file?.path), ['/dev/stdout', '/var/log/web.log']);
  t.deepEqual(effectiveAccessLog(mes(), [web, meshWide])?.policies, ['mesh-wide', 'web']);
  const off = mal('off', `{targetRef: {kind: MeshExternalService, name: web}, default: {backends: []}}`);
  const eff = effectiveAccessLog(mes(), [meshWide, off]);
  t.deepEqual(eff, { backends: [], policies: ['mesh-wide', 'off'] });
  t.is(planAccessLog(svc({ endpoints: [ipEp(80)], accessLog: eff })), undefined);
  t.is(effectiveAccessLog(mes(), []), undefined);
});

test('plan: the default format follows the protocol; JSON keys given twice keep the last value', (t) => {
  const backends = [{ type: 'File' as const, file: { path: '/var/log/meshext/x.log' } }];
  const tcp = planAccessLog(svc({ protocol: 'tcp', endpoints: [ipEp(80)], accessLog: { backends, policies: ['p'] } }));
  t.deepEqual(tcp?.backends[0]?.plain?.slice(0, 3), [{ text: '[' }, { op: 'START_TIME' }, { text: '] ' }]);
  const json = planAccessLog(
    svc({
      name: 'api',
      endpoints: [ipEp(80)],
      accessLog: { backends: [{ type: 'File', file: { path: '/var/log/meshext/j.log', format: { type: 'Json', json: [{ key: 'a', value: '%DURATION%' }, { key: 'b', value: '%KUMA_DESTINATION_SERVICE%' }, { key: 'a', value: '%BYTES_SENT%' }] } } }], policies: ['p'] },
    }),
  );
  t.deepEqual(json?.backends[0]?.fields, [
    { key: 'a', tokens: [{ op: 'BYTES_SENT' }] },
    { key: 'b', tokens: [{ text: 'api' }] },
  ]);
});

test('plan: only files under the access log directory, /dev/stdout and /dev/stderr are written; others are said and left out', (t) => {
  const dir = '/var/log/meshext';
  for (const ok of ['/dev/stdout', '/dev/stderr', '/var/log/meshext/a.log', '/var/log/meshext/sub/b.json']) t.is(accessLogPathProblem(ok, dir), undefined, ok);
  for (const bad of ['/proc/sys/kernel/core_pattern', '/sys/fs/cgroup/meshext.agent/cgroup.procs', '/var/log/meshext', '/var/log/meshext-x/a.log', '/var/log/meshext/../a.log', '/dev/stdout/x']) {
    t.is(accessLogPathProblem(bad, dir), `file.path ${JSON.stringify(bad)} is outside the access log directory /var/log/meshext (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written`, bad);
  }
  t.is(accessLogPathProblem('/tmp/logs/a.log', '/tmp/logs/'), undefined, 'a trailing / on the directory is the same directory');
  const rejected: string[] = [];
  const backends = [
    { type: 'File' as const, file: { path: '/proc/sys/kernel/core_pattern', format: { type: 'Plain' as const, plain: '|/tmp/x' } } },
    { type: 'File' as const, file: { path: '/var/log/meshext/ok.log' } },
  ];
  const plan = planAccessLog(svc({ endpoints: [ipEp(80)], accessLog: { backends, policies: ['evil'] } }), dir, rejected);
  t.deepEqual(plan?.backends.map((b) => b.path), ['/var/log/meshext/ok.log']);
  t.deepEqual(rejected, [
    'access log backend /proc/sys/kernel/core_pattern of MeshAccessLog evil: file.path "/proc/sys/kernel/core_pattern" is outside the access log directory /var/log/meshext (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written',
  ]);
});
