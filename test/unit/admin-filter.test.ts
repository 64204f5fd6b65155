// The /stats filter: RE2-like semantics on what stats filters use, linear time, clear refusals.
import test from 'ava';
import { FilterError, StatsFilter } from '../../src/admin/filter.js';

const lines = [
  'meshext_config_reloads_total{result=success}: 3',
  'meshext_config_reloads_total{result=failure}: 0',
  'meshext_upstream_cx_total{service=kri_extsvc_default_zone__httpbin_}: 12',
  'meshext_upstream_cx_active{service=kri_extsvc_default_zone__httpbin_}: 1',
  'meshext_dns_queries_total{outcome=answered,qtype=A}: 40',
  'meshext_services: 7',
  'a.b-c[d]',
  '',
];

// Each pattern means the same to JavaScript's RegExp on these lines (no catastrophic cases here).
const patterns = [
  'reloads',
  '^meshext_services',
  'total$',
  ': \\d+$',
  'cx_(total|active)',
  'cx_(?:total|active)\\{',
  '^meshext_[a-z]+_cx',
  '[^a-z_]',
  '\\d{2}$',
  '\\d{1,}$',
  '_{2,3}',
  'res?ult=s',
  'x+?_',
  '^$',
  '^',
  'a\\.b\\-c\\[d\\]',
  '[\\]\\[]',
  '[a-c-]{4}',
  'q.*e.*A',
  '\\w+=\\w+,\\w+',
  '\\s\\S',
  'zzz|services',
  '(a|)b',
  'A}',
];

for (const p of patterns) {
  test(`filter ${JSON.stringify(p)} selects the lines RegExp selects`, (t) => {
    const f = StatsFilter.compile(p);
    const re = new RegExp(p);
    t.deepEqual(lines.filter((l) => f.test(l)), lines.filter((l) => re.test(l)));
  });
}

test('a catastrophic pattern runs in linear time', (t) => {
  // A backtracking engine would not finish one of these in a lifetime. The filter counts its steps (each a
  // constant amount of work; the work budget counts the same steps): four times the text takes at most about
  // four times the steps. Counting steps rather than timing keeps the check exact on a loaded machine.
  const steps = (p: string, n: number): number => {
    const f = StatsFilter.compile(p);
    t.false(f.test('a'.repeat(n) + '!'));
    return f.steps;
  };
  for (const p of ['^(a+)+$', '(a|aa)*b', '(.*)*(.*)*(.*)*x', '^(\\w|_|[a-z])+$', '(a*)*(a*)*(a*)*(a*)*$.']) {
    const small = steps(p, 5_000);
    const ratio = steps(p, 20_000) / small;
    t.true(small > 5_000 && ratio <= 4.01, `${p}: ${small} steps for 5,000 characters, 4x the text took ${ratio.toFixed(2)}x the steps`);
  }
});

test('what is not supported or too big is refused with the reason', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['(a)\\1', /backreferences are not supported/],
    ['(?=a)', /lookaround/],
    ['(?<n>a)', /lookaround/],
    ['a{1000}', /repeat count over 100/],
    ['(((a{100}){100}){100})', /too complex/],
    ['x'.repeat(257), /longer than 256/],
    ['(a', /missing "\)"/],
    ['a)', /unbalanced/],
    ['*a', /nothing to repeat/],
    ['[a-', /missing "\]"/],
    ['[z-a]', /bad range/],
    ['\\b', /unsupported escape/],
    ['^*', /anchor cannot be repeated/],
    ['('.repeat(40) + ')'.repeat(40), /nested deeper than 32/],
  ];
  for (const [p, why] of cases) {
    const err = t.throws(() => StatsFilter.compile(p), { instanceOf: FilterError });
    t.regex(err?.message ?? '', why, p);
  }
});

test('the work budget bounds even a large text', (t) => {
  const f = StatsFilter.compile('(a|a?)*(a|a?)*(a|a?)*(a|a?)*b');
  t.throws(
    () => {
      for (let i = 0; i < 1_000_000; i++) f.test('a'.repeat(200));
    },
    { instanceOf: FilterError, message: /more work than allowed/ },
  );
});
