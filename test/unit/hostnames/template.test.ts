// Go text/template subset: rendering, trimming, functions and Go-style errors.
import test from 'ava';
import { Template } from '../../../src/hostnames/index.js';

const data = { Name: 'mes-http', DisplayName: 'http-display', Namespace: 'kuma-system', Zone: 'zone-1', Mesh: 'default' };
const funcs = {
  label: (k: string): string => {
    const labels: Record<string, string> = { team: 'payments', 'kuma.io/mesh': 'default' };
    const v = labels[k];
    if (v === undefined) throw new Error(`label ${k} not found`);
    return v;
  },
};
const render = (src: string): string => Template.parse(src).execute(data, funcs);

const cases: Array<[string, string]> = [
  ['{{ .Name }}.mesh', 'mes-http.mesh'],
  ['{{ .DisplayName }}.{{ .Namespace }}.{{ .Zone }}.{{ .Mesh }}', 'http-display.kuma-system.zone-1.default'],
  ['{{ label "team" }}.{{ .Name }}', 'payments.mes-http'],
  ['{{ printf "%s-%s" .Name .Mesh }}', 'mes-http-default'],
  ['{{ .Name | printf "%s.svc" }}', 'mes-http.svc'],
  ['{{ if eq .Mesh "default" }}d{{ else }}o{{ end }}', 'd'],
  ['{{ if ne .Mesh "default" }}d{{ else if eq .Zone "zone-1" }}z{{ else }}o{{ end }}', 'z'],
  ['{{ if and .Namespace (not (eq .Zone "x")) }}yes{{ end }}', 'yes'],
  ['{{ or "" .Zone }}', 'zone-1'],
  ['a  {{- .Name -}}  b', 'ames-httpb'],
  ['{{/* a comment */}}{{ .Name }}', 'mes-http'],
  ['{{- /* trimmed comment */ -}} x', 'x'],
  ['{{ `raw` }}-{{ "q\\"s" }}', 'raw-q"s'],
  ['{{ eq .Name "a" "mes-http" }}', 'true'],
  ['{{ (label "kuma.io/mesh") }}', 'default'],
  ['plain.text', 'plain.text'],
];
for (const [src, want] of cases) {
  test(`renders ${src}`, (t) => t.is(render(src), want));
}

const parseErrors: Array<[string, string]> = [
  ['{{ .Name[4 }}.mesh', "template: :1: bad character U+005B '['"],
  ['{{ lower .Name }}', 'template: :1: function "lower" not defined'],
  ['{{ .Name', 'template: :1: unclosed action'],
  ['{{ if .Name }}x', 'template: :1: unexpected EOF'],
  ['x{{ end }}', 'template: :1: unexpected {{end}}'],
  ['{{ else }}', 'template: :1: unexpected {{else}}'],
  ['{{ if }}x{{ end }}', 'template: :1: missing value for if'],
  ['{{ }}', 'template: :1: missing value for command'],
  ['{{ "abc }}', 'template: :1: unterminated quoted string'],
  ['{{/* x }}', 'template: :1: unclosed comment'],
  ['a\nb\n{{ .Name ) }}', 'template: :3: unexpected right paren'],
];
for (const [src, want] of parseErrors) {
  test(`parse error for ${JSON.stringify(src)}`, (t) => {
    const e = t.throws(() => Template.parse(src));
    t.is(e?.message, want);
    t.is((e as { code?: string }).code, 'MESHEXT_E_TEMPLATE');
  });
}

for (const construct of ['{{ range .Name }}{{ end }}', '{{ with .Name }}{{ end }}', '{{ $x := 1 }}', '{{ len .Name }}', '{{ template "x" }}', '{{ define "x" }}{{ end }}']) {
  test(`unsupported construct is named: ${construct}`, (t) => {
    const e = t.throws(() => Template.parse(construct));
    t.regex(e?.message ?? '', /^template: :1: meshext does not support /);
  });
}

test('execution errors use Go wording with line and column', (t) => {
  t.is(t.throws(() => render('{{ .Foo }}'))?.message, 'template: :1:3: executing "" at <.Foo>: can\'t evaluate field Foo in type hostname.Data');
  t.is(t.throws(() => render('x\n  {{ label "nope" }}'))?.message, 'template: :2:5: executing "" at <label "nope">: error calling label: label nope not found');
  t.regex(t.throws(() => render('{{ label }}'))?.message ?? '', /wrong number of args for label: want 1 got 0/);
  t.regex(t.throws(() => render('{{ eq 1 "a" }}'))?.message ?? '', /incompatible types for comparison/);
});

test('property: parse and execute only ever fail with TemplateError', async (t) => {
  const fc = (await import('fast-check')).default;
  const { TemplateError } = await import('../../../src/hostnames/index.js');
  const tokens = ['{{', '}}', '{{-', '-}}', ' ', '\n', '.Name', '.Foo', '.A.B', '.', 'label', '"k"', '"team"', '`r`', 'printf', '"%s%d%q"', '|', '(', ')', 'if', 'else', 'end', 'eq', 'ne', 'and', 'or', 'not', '/*', '*/', '1', '-2', '0x', 'true', 'nil', 'x', '[', '"\\x4', '"\\u00e9"'];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...tokens), { maxLength: 25 }), (parts) => {
      try {
        render(parts.join(''));
      } catch (e) {
        return e instanceof TemplateError;
      }
      return true;
    }),
    { numRuns: 2000 },
  );
  t.pass();
});
