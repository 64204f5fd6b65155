import test from 'ava';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

// The helpers are plain .mjs beside the bench scripts (runnable without a build); tests load them from
// the repo root at run time, and take their types from the .d.mts files next to them.
type Stats = typeof import('../../scripts/bench/lib/stats.mjs');
type Parse = typeof import('../../scripts/bench/lib/parse.mjs');
type Grpc = typeof import('../../scripts/bench/lib/grpc.mjs');
const load = async <T>(p: string): Promise<T> => (await import(pathToFileURL(resolve(p)).href)) as T;
const stats = await load<Stats>('scripts/bench/lib/stats.mjs');
const parse = await load<Parse>('scripts/bench/lib/parse.mjs');
const grpc = await load<Grpc>('scripts/bench/lib/grpc.mjs');

test('median takes the middle value, or the mean of the middle two, ignoring non-finite values', (t) => {
  t.is(stats.median([3, 1, 2]), 2);
  t.is(stats.median([4, 1, 3, 2]), 2.5);
  t.is(stats.median([5, NaN, 1, Infinity, 3]), 3);
  t.true(Number.isNaN(stats.median([])));
});

test('percentile is nearest-rank', (t) => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  t.is(stats.percentile(xs, 50), 50);
  t.is(stats.percentile(xs, 99), 99);
  t.is(stats.percentile(xs, 100), 100);
  t.is(stats.percentile(xs, 0), 1);
  t.is(stats.percentile([7], 99), 7);
  t.throws(() => stats.percentile(xs, 101), { instanceOf: RangeError });
});

test('ratio and verdict treat missing figures as not comparable', (t) => {
  t.is(stats.ratio(50, 100), 0.5);
  t.true(Number.isNaN(stats.ratio(50, 0)));
  t.true(Number.isNaN(stats.ratio(undefined, 3)));
  t.is(stats.verdict(90, '>=', 0.9, 100), 'PASS');
  t.is(stats.verdict(89.9, '>=', 0.9, 100), 'FAIL');
  t.is(stats.verdict(15, '<=', 1.5, 10), 'PASS');
  t.is(stats.verdict(15.1, '<=', 1.5, 10), 'FAIL');
  t.is(stats.verdict(NaN, '<=', 1.5, 10), 'n/a');
});

test('scenarioTable compares medians with direct and the best peer and judges meshext', (t) => {
  const rows = [
    { name: 'direct', direct: true, values: { rps: [100, 300, 200], p99: [1, 1, 1] } },
    { name: 'haproxy', peer: true, values: { rps: [80, 90, 70], p99: [2, 2, 2] } },
    { name: 'nginx', peer: true, values: { rps: [60, 60, 60], p99: [3, 1.5, 1.5] } },
    { name: 'meshext', values: { rps: [72, 73, 71], p99: [2.4, 2.4, 2.4] } },
  ];
  const metrics = [
    { key: 'rps', label: 'req/s', higherIsBetter: true },
    { key: 'p99', label: 'p99', higherIsBetter: false },
  ];
  const { table, summary } = stats.scenarioTable(rows, metrics, [
    { label: 'rps', metric: 'rps', op: '>=', factor: 0.9, against: 'peer' },
    { label: 'p99', metric: 'p99', op: '<=', factor: 1.5, against: 'peer' },
    { label: 'abs', metric: 'p99', op: '<=', factor: 2, against: 'absolute' },
    { label: 'vs nginx', metric: 'p99', op: '<=', factor: 1, against: 'nginx' },
  ]);
  t.deepEqual(table[0], ['target', 'req/s', 'vs direct', 'vs best peer', 'p99', 'vs direct', 'vs best peer']);
  t.deepEqual(table[4], ['meshext', '72.0', '0.36x', '0.90x', '2.40', '2.40x', '1.60x']);
  t.deepEqual(summary.map((s) => [s.reference, s.verdict]), [[80, 'PASS'], [1.5, 'FAIL'], [1, 'FAIL'], [1.5, 'FAIL']]);
});

test('a meshext row that failed fails its targets; without a direct row the vs-direct columns go', (t) => {
  const { table, summary } = stats.scenarioTable(
    [{ name: 'haproxy', peer: true, values: { m: [1] } }, { name: 'meshext', error: 'not built', values: {} }],
    [{ key: 'm', label: 'm', higherIsBetter: false }],
    [{ label: 'm', metric: 'm', op: '<=', factor: 10, against: 'absolute' }],
  );
  t.deepEqual(table[0], ['target', 'm', 'vs best peer']);
  t.is(summary[0]?.verdict, 'FAIL (no result)');
});

test('formatTable aligns text columns and escapes Markdown pipes', (t) => {
  t.is(stats.formatTable([['a', 'bb'], ['ccc', '1.5']]), 'a    bb\n---  ---\nccc  1.5\n');
  t.is(stats.formatTable([['h'], ['x|y']], 'md'), '| h |\n| --- |\n| x\\|y |\n');
});

test('parseWrk reads requests/s, percentiles in any unit, and errors', (t) => {
  const out = `Running 2s test @ http://127.0.0.1:1/
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.50ms
     99%    2.01s
  1000 requests in 2.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  55939.12
Transfer/sec:      8.12MB
`;
  t.deepEqual(parse.parseWrk(out), { rps: 55939.12, p50us: 812, p99us: 2.01e6, errors: 7, requests: 1000 });
  t.throws(() => parse.parseWrk('unable to connect'), { message: /wrk: unexpected output/ });
});

test('parseH2load takes rps from the summary and percentiles from the log', (t) => {
  const summary = 'finished in 2.00s, 40293.50 req/s, 1MB/s\nrequests: 10 total, 10 started, 10 done, 9 succeeded, 1 failed, 0 errored, 0 timeout\n' +
    'status codes: 9 2xx, 0 3xx, 0 4xx, 1 5xx\n' +
    'traffic: 4.59MB (4817830) total, 1.13MB (1188630) headers (space savings 93.34%), 2.65MB (2776238) data\n';
  const log = Array.from({ length: 10 }, (_, i) => `1700000000${i}\t${i === 9 ? 502 : 200}\t${(i + 1) * 100}`).join('\n') + '\n';
  t.deepEqual(parse.parseH2load(summary, log), { rps: 40293.5, p50us: 500, p99us: 1000, failed: 2, total: 10, succeeded: 9, non2xx: 1, dataBytes: 2776238 });
});

test('scenarioTable leaves ratio columns out for a noRatio metric', (t) => {
  const { table } = stats.scenarioTable(
    [{ name: 'direct', direct: true, values: { rps: [10], up: [50] } }, { name: 'nginx', peer: true, values: { rps: [5], up: [40] } }],
    [{ key: 'rps', label: 'req/s', higherIsBetter: true }, { key: 'up', label: 'upstream CPU %', higherIsBetter: false, noRatio: true }],
  );
  t.deepEqual(table[0], ['target', 'req/s', 'vs direct', 'vs best peer', 'upstream CPU %']);
  t.deepEqual(table[2], ['nginx', '5.00', '0.50x', '1.00x', '40.0']);
});

test('the gRPC frames carry Msg{payload} behind a 5-byte prefix, and decodeMsg reads it back', (t) => {
  const req = grpc.grpcRequestFrame();
  t.is(req[0], 0);
  t.is(req.readUInt32BE(1), req.length - 5);
  t.is(grpc.decodeMsg(req.subarray(5)).toString(), grpc.GRPC_REQUEST_PAYLOAD);
  t.is(grpc.grpcResponseFrame().length, 5 + 2 + Buffer.byteLength(grpc.GRPC_RESPONSE_PAYLOAD));
  t.is(grpc.decodeMsg(Buffer.alloc(0)).length, 0);
  t.throws(() => grpc.decodeMsg(Buffer.from([0x12, 0x01, 0x41])), { message: /not a Msg/ });
  t.throws(() => grpc.encodeMsg('x'.repeat(128)), { instanceOf: RangeError });
});
