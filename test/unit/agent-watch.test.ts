import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigWatcher, contentHash } from '../../src/agent/watch.js';

function tmpdir(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-watch-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Lays out a directory the way the kubelet mounts a ConfigMap: `..data` → timestamped dir, files linked through it. */
function configMapVersion(dir: string, version: string, files: Record<string, string>): void {
  const ts = path.join(dir, `..${version}`);
  fs.mkdirSync(ts);
  for (const [n, c] of Object.entries(files)) fs.writeFileSync(path.join(ts, n), c);
  const tmpLink = path.join(dir, '..data_tmp');
  fs.symlinkSync(`..${version}`, tmpLink);
  fs.renameSync(tmpLink, path.join(dir, '..data'));
  for (const n of Object.keys(files)) {
    const link = path.join(dir, n);
    if (!fs.existsSync(link)) fs.symlinkSync(path.join('..data', n), link);
  }
}

test('content hash ignores non-resource files and changes with resource bytes', (t) => {
  const d = tmpdir(t);
  fs.writeFileSync(path.join(d, 'a.yaml'), 'x: 1\n');
  const h1 = contentHash([d]);
  fs.writeFileSync(path.join(d, 'notes.txt'), 'ignored');
  fs.writeFileSync(path.join(d, '.a.yaml.swp'), 'editor temp');
  t.is(contentHash([d]), h1);
  fs.writeFileSync(path.join(d, 'a.yaml'), 'x: 2\n');
  t.not(contentHash([d]), h1);
});

test('a ConfigMap ..data swap triggers exactly one change', async (t) => {
  const d = tmpdir(t);
  configMapVersion(d, '2026_01_01_00_00_00.1', { 'mes.yaml': 'a: 1\n' });
  const changes: string[] = [];
  const w = new ConfigWatcher({ paths: [d], debounceMs: 50, rescanIntervalMs: 0, onChange: (r) => changes.push(r), onError: (e) => t.fail(e.message) });
  w.start();
  t.teardown(() => w.stop());
  configMapVersion(d, '2026_01_01_00_00_00.2', { 'mes.yaml': 'a: 2\n' });
  for (let i = 0; i < 100 && changes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  t.is(changes.length, 1);
});

test('periodic rescan catches a change without events; identical content is not a change', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'mes.yaml');
  fs.writeFileSync(f, 'a: 1\n');
  const changes: string[] = [];
  const w = new ConfigWatcher({ paths: [d], debounceMs: 10_000, rescanIntervalMs: 50, onChange: (r) => changes.push(r), onError: () => undefined });
  w.start();
  t.teardown(() => w.stop());
  fs.writeFileSync(f, 'a: 1\n');
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(changes, []);
  fs.writeFileSync(f, 'a: 3\n');
  for (let i = 0; i < 100 && changes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(changes, ['periodic rescan']);
});

/** Waits up to `ms` for `changes` to reach `n` entries; returns how long it took. */
async function changeWithin(changes: string[], n: number, ms: number): Promise<number> {
  const started = Date.now();
  while (changes.length < n && Date.now() - started < ms) await new Promise((r) => setTimeout(r, 10));
  return Date.now() - started;
}

function replaceByRename(file: string, content: string): void {
  fs.writeFileSync(`${file}.tmp`, content);
  fs.renameSync(`${file}.tmp`, file);
}

for (const given of ['directory', 'file'] as const) {
  test(`a file replaced by write-to-temp-and-rename keeps being seen within a second (--config ${given})`, async (t) => {
    const d = tmpdir(t);
    const f = path.join(d, 'mes.yaml');
    fs.writeFileSync(f, 'a: 1\n');
    const changes: string[] = [];
    // No periodic rescan: only the watches can see these changes.
    const w = new ConfigWatcher({ paths: [given === 'directory' ? d : f], debounceMs: 50, rescanIntervalMs: 0, onChange: (r) => changes.push(r), onError: (e) => t.fail(e.message) });
    w.start();
    t.teardown(() => w.stop());
    const steps: Array<() => void> = [
      () => replaceByRename(f, 'a: 2\n'),
      () => fs.writeFileSync(f, 'a: 3\n'), // in place, after the rename: the case that went deaf
      () => replaceByRename(f, 'a: 4\n'),
      () => fs.appendFileSync(f, 'b: 5\n'),
    ];
    for (const [i, step] of steps.entries()) {
      step();
      const took = await changeWithin(changes, i + 1, 1_000);
      t.is(changes.length, i + 1, `step ${i + 1} not seen within 1 s`);
      t.true(took < 1_000);
    }
  });
}

test('a subdirectory created later is watched too', async (t) => {
  const d = tmpdir(t);
  const changes: string[] = [];
  const w = new ConfigWatcher({ paths: [d], debounceMs: 30, rescanIntervalMs: 0, onChange: (r) => changes.push(r), onError: (e) => t.fail(e.message) });
  w.start();
  t.teardown(() => w.stop());
  fs.mkdirSync(path.join(d, 'sub'));
  fs.writeFileSync(path.join(d, 'sub/x.yaml'), 'a: 1\n');
  await changeWithin(changes, 1, 1_000);
  t.is(changes.length, 1);
  t.true(w.watchedDirs().includes(path.join(fs.realpathSync(d), 'sub')));
  fs.writeFileSync(path.join(d, 'sub/x.yaml'), 'a: 2\n');
  await changeWithin(changes, 2, 1_000);
  t.is(changes.length, 2);
});

test('an edit made while a load runs is not taken as loaded: it reloads once more', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'mes.yaml');
  fs.writeFileSync(f, 'a: 1\n');
  const changes: string[] = [];
  // No rescan, and the edit below happens before the watch is armed, so no file event can rescue it.
  const w = new ConfigWatcher({ paths: [d], debounceMs: 20, rescanIntervalMs: 0, onChange: (r) => changes.push(r), onError: () => undefined });
  t.teardown(() => w.stop());
  w.beginLoad(); // the load reads the files from here on...
  fs.writeFileSync(f, 'a: 2\n'); // ...while they change
  w.markLoaded(); // the load is applied
  w.start();
  for (let i = 0; i < 50 && changes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(changes, ['changed while loading']);
});
