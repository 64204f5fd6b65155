/**
 * A subset of Go's text/template, enough for HostnameGenerator templates, with Go's error wording
 * (`template: :1: function "lower" not defined`). Supported: literal text, `{{ .Name }}` and the other
 * fields, `label "k"`, `printf`, `if`/`else if`/`else`/`end`, `eq`/`ne`, `and`/`or`/`not`, pipelines,
 * parentheses, string/number/bool literals, comments and `{{-`/`-}}` trimming. Go constructs outside that
 * subset (range, with, variables, define, ...) are parse errors that name the construct.
 */

export class TemplateError extends Error {
  readonly code = 'MESHEXT_E_TEMPLATE';
}

/** Values a template sees. Unknown fields are execution errors, as in Go. */
export interface TemplateData {
  Name: string;
  DisplayName: string;
  Namespace: string;
  Zone: string;
  Mesh: string;
}

export interface TemplateFuncs {
  /** `label "k"`: returns the value or throws (message becomes `error calling label: <msg>`). */
  label(key: string): string;
}

type Value = string | number | boolean | null;

type Arg =
  | { t: 'field'; name: string; pos: number; text: string }
  | { t: 'dot'; pos: number; text: string }
  | { t: 'lit'; value: Value; pos: number; text: string }
  | { t: 'func'; name: string; pos: number; text: string }
  | { t: 'pipe'; pipe: Pipe; pos: number; text: string };
interface Cmd {
  args: Arg[];
  pos: number;
  text: string;
}
type Pipe = Cmd[];
type Node =
  | { t: 'text'; text: string }
  | { t: 'action'; pipe: Pipe; pos: number }
  | { t: 'if'; branches: Array<{ cond: Pipe; body: Node[] }>; otherwise?: Node[] };

const FUNCS = new Set(['label', 'printf', 'eq', 'ne', 'and', 'or', 'not']);
// Valid Go, deliberately not implemented: named so the user knows it is meshext's limit, not a typo.
const UNSUPPORTED_FUNCS = new Set(['len', 'index', 'slice', 'print', 'println', 'html', 'js', 'urlquery', 'call', 'lt', 'le', 'gt', 'ge']);
const UNSUPPORTED_KEYWORDS = new Set(['range', 'with', 'define', 'template', 'block', 'break', 'continue']);
const SUPPORTED = 'supported: .Name .DisplayName .Namespace .Zone .Mesh, label, printf, if/else/end, eq, ne, and, or, not, pipelines';
const FIELDS = new Set(['Name', 'DisplayName', 'Namespace', 'Zone', 'Mesh']);

type Tok =
  | { k: 'text'; v: string; pos: number }
  | { k: 'open'; pos: number; trim: boolean }
  | { k: 'close'; pos: number; trim: boolean }
  | { k: 'comment'; pos: number }
  | { k: 'field'; v: string; pos: number }
  | { k: 'dot'; pos: number }
  | { k: 'ident'; v: string; pos: number }
  | { k: 'string'; v: string; pos: number; raw: string }
  | { k: 'number'; v: number; pos: number; raw: string }
  | { k: 'pipe'; pos: number }
  | { k: 'lparen'; pos: number }
  | { k: 'rparen'; pos: number }
  | { k: 'var'; v: string; pos: number }
  | { k: 'eof'; pos: number };

const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';

class Lexer {
  toks: Tok[] = [];
  constructor(private readonly src: string) {}

  line(pos: number): number {
    let n = 1;
    for (let i = 0; i < pos && i < this.src.length; i++) if (this.src[i] === '\n') n++;
    return n;
  }

  fail(pos: number, msg: string): never {
    throw new TemplateError(`template: :${this.line(pos)}: ${msg}`);
  }

  run(): Tok[] {
    const s = this.src;
    let i = 0;
    while (i < s.length) {
      const open = s.indexOf('{{', i);
      if (open < 0) {
        this.toks.push({ k: 'text', v: s.slice(i), pos: i });
        break;
      }
      if (open > i) this.toks.push({ k: 'text', v: s.slice(i, open), pos: i });
      i = this.action(open);
    }
    this.toks.push({ k: 'eof', pos: s.length });
    return this.toks;
  }

  /** Lexes one `{{ ... }}` starting at `start`; returns the index after `}}`. */
  private action(start: number): number {
    const s = this.src;
    let i = start + 2;
    const trimLeft = s[i] === '-' && isSpace(s[i + 1]);
    if (trimLeft) i += 2;
    this.toks.push({ k: 'open', pos: start, trim: trimLeft });
    while (isSpace(s[i])) i++;
    if (s.startsWith('/*', i)) {
      const end = s.indexOf('*/', i + 2);
      if (end < 0) this.fail(start, 'unclosed comment');
      i = end + 2;
      let trimRight = false;
      if (s[i] === ' ' && s[i + 1] === '-' && s.startsWith('}}', i + 2)) {
        trimRight = true;
        i += 2;
      }
      if (!s.startsWith('}}', i)) this.fail(start, 'comment ends before closing delimiter');
      this.toks.push({ k: 'comment', pos: start }, { k: 'close', pos: i, trim: trimRight });
      return i + 2;
    }
    for (;;) {
      if (i >= s.length) this.fail(start, 'unclosed action');
      const c = s[i] as string;
      if (isSpace(c)) {
        if (s[i + 1] === '-' && s.startsWith('}}', i + 2)) {
          this.toks.push({ k: 'close', pos: i, trim: true });
          return i + 4;
        }
        i++;
        continue;
      }
      if (s.startsWith('}}', i)) {
        this.toks.push({ k: 'close', pos: i, trim: false });
        return i + 2;
      }
      if (c === '|') {
        this.toks.push({ k: 'pipe', pos: i++ });
      } else if (c === '(') {
        this.toks.push({ k: 'lparen', pos: i++ });
      } else if (c === ')') {
        this.toks.push({ k: 'rparen', pos: i++ });
      } else if (c === '"') {
        i = this.quoted(i);
      } else if (c === '`') {
        const end = s.indexOf('`', i + 1);
        if (end < 0) this.fail(i, 'unterminated raw quoted string');
        this.toks.push({ k: 'string', v: s.slice(i + 1, end), pos: i, raw: s.slice(i, end + 1) });
        i = end + 1;
      } else if (c === '.' && /[A-Za-z_]/.test(s[i + 1] ?? '')) {
        const m = /^(\.[A-Za-z_][A-Za-z0-9_]*)+/.exec(s.slice(i)) as RegExpExecArray;
        this.toks.push({ k: 'field', v: m[0], pos: i });
        i += m[0].length;
      } else if (c === '.' && !/[0-9]/.test(s[i + 1] ?? '')) {
        this.toks.push({ k: 'dot', pos: i++ });
      } else if (/[0-9.+-]/.test(c)) {
        const m = /^[+-]?(0[xX][0-9a-fA-F_]+|[0-9_]*\.?[0-9_]+([eE][+-]?[0-9]+)?)/.exec(s.slice(i));
        const raw = m?.[0] ?? '';
        const v = Number(raw.replace(/_/g, ''));
        if (!raw || Number.isNaN(v) || /[A-Za-z0-9_.]/.test(s[i + raw.length] ?? '')) {
          const bad = /^[^\s}|()]+/.exec(s.slice(i))?.[0] ?? c;
          this.fail(i, `bad number syntax: "${bad}"`);
        }
        this.toks.push({ k: 'number', v, pos: i, raw });
        i += raw.length;
      } else if (c === '$') {
        const m = /^\$[A-Za-z0-9_]*/.exec(s.slice(i)) as RegExpExecArray;
        this.fail(i, `meshext does not support variables (${m[0]}) in hostname templates (${SUPPORTED})`);
      } else if (/[A-Za-z_]/.test(c)) {
        const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i)) as RegExpExecArray;
        this.toks.push({ k: 'ident', v: m[0], pos: i });
        i += m[0].length;
      } else {
        const cp = s.codePointAt(i) as number;
        const ch = String.fromCodePoint(cp);
        this.fail(i, `bad character U+${cp.toString(16).toUpperCase().padStart(4, '0')} '${ch}'`);
      }
    }
  }

  private quoted(start: number): number {
    const s = this.src;
    let i = start + 1;
    let out = '';
    for (;;) {
      const c = s[i];
      if (c === undefined || c === '\n') this.fail(start, 'unterminated quoted string');
      if (c === '"') break;
      if (c === '\\') {
        const n = s[i + 1];
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"', "'": "'", a: '\x07', b: '\b', f: '\f', v: '\v' };
        if (n !== undefined && simple[n] !== undefined) {
          out += simple[n];
          i += 2;
          continue;
        }
        const hex = n === 'x' ? 2 : n === 'u' ? 4 : n === 'U' ? 8 : 0;
        const digits = s.slice(i + 2, i + 2 + hex);
        if (hex && /^[0-9a-fA-F]+$/.test(digits) && digits.length === hex) {
          out += String.fromCodePoint(parseInt(digits, 16));
          i += 2 + hex;
          continue;
        }
        this.fail(start, `invalid syntax`);
      }
      out += c;
      i++;
    }
    this.toks.push({ k: 'string', v: out, pos: start, raw: s.slice(start, i + 1) });
    return i + 1;
  }
}

class Parser {
  private i = 0;
  constructor(private readonly toks: Tok[], private readonly lx: Lexer, private readonly src: string) {}

  private peek(): Tok {
    return this.toks[this.i] as Tok;
  }
  private next(): Tok {
    return this.toks[this.i++] as Tok;
  }
  private fail(pos: number, msg: string): never {
    return this.lx.fail(pos, msg);
  }

  parse(): Node[] {
    const { nodes, end } = this.list(false);
    if (end) this.fail(end.pos, `unexpected {{${end.word}}}`);
    return nodes;
  }

  /** Parses nodes until EOF or an `{{else}}`/`{{end}}` (returned to the caller). */
  private list(inIf: boolean): { nodes: Node[]; end?: { word: 'else' | 'end'; pos: number; elseIf?: boolean } } {
    const nodes: Node[] = [];
    for (;;) {
      const t = this.next();
      if (t.k === 'eof') {
        if (inIf) this.fail(t.pos, 'unexpected EOF');
        return { nodes };
      }
      if (t.k === 'text') {
        nodes.push({ t: 'text', text: t.v });
        continue;
      }
      if (t.k !== 'open') this.fail(t.pos, `unexpected ${this.describe(t)}`);
      const first = this.peek();
      if (first.k === 'comment') {
        this.next();
        this.next(); // close
        continue;
      }
      if (first.k === 'ident' && (first.v === 'end' || first.v === 'else')) {
        this.next();
        if (first.v === 'else' && this.peek().k === 'ident' && (this.peek() as { v: string }).v === 'if') {
          this.next();
          return { nodes, end: { word: 'else', pos: first.pos, elseIf: true } };
        }
        this.expectClose(first.v);
        return { nodes, end: { word: first.v, pos: first.pos } };
      }
      if (first.k === 'ident' && first.v === 'if') {
        this.next();
        nodes.push(this.ifNode(first.pos));
        continue;
      }
      if (first.k === 'ident' && UNSUPPORTED_KEYWORDS.has(first.v)) {
        this.fail(first.pos, `meshext does not support {{${first.v}}} in hostname templates (${SUPPORTED})`);
      }
      const pipe = this.pipeline('command');
      nodes.push({ t: 'action', pipe, pos: first.pos });
    }
  }

  private ifNode(pos: number): Node {
    const branches: Array<{ cond: Pipe; body: Node[] }> = [];
    let cond = this.pipeline('if');
    for (;;) {
      const { nodes, end } = this.list(true);
      branches.push({ cond, body: nodes });
      if (!end || end.word === 'end') return { t: 'if', branches };
      if (end.elseIf) {
        cond = this.pipeline('if');
        continue;
      }
      const rest = this.list(true);
      if (!rest.end || rest.end.word !== 'end') this.fail(rest.end?.pos ?? pos, 'expected end; found {{else}}');
      return { t: 'if', branches, otherwise: rest.nodes };
    }
  }

  private expectClose(ctx: string): void {
    const t = this.next();
    if (t.k !== 'close') this.fail(t.pos, `unexpected ${this.describe(t)} in ${ctx}`);
  }

  /** Parses `cmd | cmd ...` up to the closing delimiter (or `)` when nested). */
  private pipeline(ctx: string, nested = false): Pipe {
    const cmds: Pipe = [];
    let cmd: Cmd | undefined;
    for (;;) {
      const t = this.next();
      const endTok = nested ? t.k === 'rparen' : t.k === 'close';
      if (endTok || t.k === 'eof' || (!nested && t.k === 'rparen') || (nested && t.k === 'close')) {
        if (t.k === 'eof') this.fail(t.pos, nested ? 'unclosed left paren' : 'unclosed action');
        if (!nested && t.k === 'rparen') this.fail(t.pos, 'unexpected right paren');
        if (nested && t.k === 'close') this.fail(t.pos, 'unclosed left paren');
        if (cmd) cmds.push(cmd);
        else if (cmds.length > 0) this.fail(t.pos, 'missing command after |');
        if (cmds.length === 0) this.fail(t.pos, `missing value for ${ctx}`);
        return cmds;
      }
      if (t.k === 'pipe') {
        if (!cmd) this.fail(t.pos, 'missing value for command');
        cmds.push(cmd);
        cmd = undefined;
        continue;
      }
      const arg = this.operand(t);
      if (!cmd) cmd = { args: [], pos: t.pos, text: '' };
      cmd.args.push(arg);
      cmd.text = this.src.slice(cmd.pos, t.pos) + arg.text;
    }
  }

  private operand(t: Tok): Arg {
    switch (t.k) {
      case 'field': {
        const parts = t.v.split('.').slice(1);
        if (parts.length > 1) this.fail(t.pos, `meshext does not support nested field ${t.v} (${SUPPORTED})`);
        return { t: 'field', name: parts[0] as string, pos: t.pos, text: t.v };
      }
      case 'dot':
        return { t: 'dot', pos: t.pos, text: '.' };
      case 'string':
        return { t: 'lit', value: t.v, pos: t.pos, text: t.raw };
      case 'number':
        return { t: 'lit', value: t.v, pos: t.pos, text: t.raw };
      case 'lparen': {
        const pipe = this.pipeline('command', true);
        return { t: 'pipe', pipe, pos: t.pos, text: `(${pipe.map((c) => c.text).join(' | ')})` };
      }
      case 'var':
        return this.fail(t.pos, `meshext does not support variables (${t.v}) in hostname templates (${SUPPORTED})`);
      case 'ident': {
        if (t.v === 'true' || t.v === 'false') return { t: 'lit', value: t.v === 'true', pos: t.pos, text: t.v };
        if (t.v === 'nil') return { t: 'lit', value: null, pos: t.pos, text: t.v };
        if (t.v === 'else' || t.v === 'end' || t.v === 'if' || UNSUPPORTED_KEYWORDS.has(t.v)) this.fail(t.pos, `unexpected <${t.v}> in command`);
        if (UNSUPPORTED_FUNCS.has(t.v)) this.fail(t.pos, `meshext does not support function "${t.v}" in hostname templates (${SUPPORTED})`);
        if (!FUNCS.has(t.v)) this.fail(t.pos, `function "${t.v}" not defined`);
        return { t: 'func', name: t.v, pos: t.pos, text: t.v };
      }
      default:
        return this.fail(t.pos, `unexpected ${this.describe(t)} in operand`);
    }
  }

  private describe(t: Tok): string {
    switch (t.k) {
      case 'close':
        return '"}}"';
      case 'open':
        return '"{{"';
      case 'rparen':
        return '")"';
      case 'pipe':
        return '"|"';
      default:
        return `<${'v' in t ? String(t.v) : t.k}>`;
    }
  }
}

function applyTrim(toks: Tok[]): void {
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i] as Tok;
    if (t.k !== 'text') continue;
    const prev = toks[i - 1];
    const next = toks[i + 1];
    if (prev?.k === 'close' && prev.trim) t.v = t.v.replace(/^[ \t\r\n]+/, '');
    if (next?.k === 'open' && next.trim) t.v = t.v.replace(/[ \t\r\n]+$/, '');
  }
}

/** A parsed template; `execute` renders it. */
export class Template {
  private constructor(private readonly src: string, private readonly nodes: Node[]) {}

  /** Parses with Go's rules for the supported subset; throws TemplateError (`template: :1: ...`). */
  static parse(src: string): Template {
    const lx = new Lexer(src);
    const toks = lx.run();
    applyTrim(toks);
    return new Template(src, new Parser(toks, lx, src).parse());
  }

  /** Renders; throws TemplateError in Go's `template: :L:C: executing "" at <...>: ...` form. */
  execute(data: TemplateData, funcs: TemplateFuncs): string {
    return new Exec(this.src, data, funcs).nodes(this.nodes);
  }
}

class Exec {
  constructor(private readonly src: string, private readonly data: TemplateData, private readonly funcs: TemplateFuncs) {}

  private fail(pos: number, at: string, msg: string): never {
    const before = this.src.slice(0, pos);
    const line = before.split('\n').length;
    const col = pos - (before.lastIndexOf('\n') + 1);
    throw new TemplateError(`template: :${line}:${col}: executing "" at <${at}>: ${msg}`);
  }

  nodes(ns: Node[]): string {
    let out = '';
    for (const n of ns) {
      if (n.t === 'text') out += n.text;
      else if (n.t === 'action') out += printValue(this.pipe(n.pipe));
      else {
        let done = false;
        for (const b of n.branches) {
          if (truthy(this.pipe(b.cond))) {
            out += this.nodes(b.body);
            done = true;
            break;
          }
        }
        if (!done && n.otherwise) out += this.nodes(n.otherwise);
      }
    }
    return out;
  }

  private pipe(p: Pipe): Value {
    let prev: Value | undefined;
    for (const cmd of p) prev = this.cmd(cmd, prev);
    return prev as Value;
  }

  private cmd(c: Cmd, piped: Value | undefined): Value {
    const [head, ...rest] = c.args as [Arg, ...Arg[]];
    if (head.t !== 'func') {
      if (rest.length > 0 || piped !== undefined) {
        if (head.t === 'field') this.fail(head.pos, head.text, `${head.text} is not a method but has arguments`);
        this.fail(head.pos, head.text, `can't give argument to non-function ${head.text}`);
      }
      return this.arg(head);
    }
    const name = head.name;
    // and/or evaluate lazily (Go 1.18+); everything else gets evaluated arguments.
    if (name === 'and' || name === 'or') {
      const args: Array<() => Value> = rest.map((a) => () => this.arg(a));
      if (piped !== undefined) args.push(() => piped);
      if (args.length < 1) this.fail(head.pos, c.text, `wrong number of args for ${name}: want at least 1 got 0`);
      let v: Value = null;
      for (const a of args) {
        v = a();
        if (name === 'and' ? !truthy(v) : truthy(v)) return v;
      }
      return v;
    }
    const args = rest.map((a) => this.arg(a));
    if (piped !== undefined) args.push(piped);
    const want = (n: number): void => {
      if (args.length !== n) this.fail(head.pos, c.text, `wrong number of args for ${name}: want ${n} got ${args.length}`);
    };
    switch (name) {
      case 'label': {
        want(1);
        if (typeof args[0] !== 'string') {
          this.fail(head.pos, c.text, `wrong type for value; expected string; got ${goType(args[0] as Value)}`);
        }
        try {
          return this.funcs.label(args[0]);
        } catch (e) {
          return this.fail(head.pos, c.text, `error calling label: ${(e as Error).message}`);
        }
      }
      case 'not':
        want(1);
        return !truthy(args[0] as Value);
      case 'eq': {
        if (args.length < 2) this.fail(head.pos, c.text, 'error calling eq: missing argument for comparison');
        const [a, ...bs] = args as [Value, ...Value[]];
        for (const b of bs) {
          if (!comparable(a, b)) this.fail(head.pos, c.text, 'error calling eq: incompatible types for comparison');
          if (a === b) return true;
        }
        return false;
      }
      case 'ne': {
        want(2);
        if (!comparable(args[0] as Value, args[1] as Value)) this.fail(head.pos, c.text, 'error calling ne: incompatible types for comparison');
        return args[0] !== args[1];
      }
      case 'printf': {
        if (args.length < 1) this.fail(head.pos, c.text, 'wrong number of args for printf: want at least 1 got 0');
        if (typeof args[0] !== 'string') this.fail(head.pos, c.text, `wrong type for value; expected string; got ${goType(args[0] as Value)}`);
        return sprintf(args[0], args.slice(1));
      }
      default:
        return this.fail(head.pos, c.text, `function "${name}" not defined`);
    }
  }

  private arg(a: Arg): Value {
    switch (a.t) {
      case 'lit':
        return a.value;
      case 'dot':
        // Go would print the struct; a hostname can never use that, so make it an explicit error.
        return this.fail(a.pos, '.', 'meshext does not support printing the whole data object; use a field such as .Name');
      case 'field':
        if (!FIELDS.has(a.name)) this.fail(a.pos, a.text, `can't evaluate field ${a.name} in type hostname.Data`);
        return this.data[a.name as keyof TemplateData];
      case 'pipe':
        return this.pipe(a.pipe);
      case 'func':
        return this.cmd({ args: [a], pos: a.pos, text: a.text }, undefined);
    }
  }
}

function truthy(v: Value): boolean {
  return !(v === null || v === false || v === '' || v === 0);
}

function goType(v: Value): string {
  if (v === null) return 'nil';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float64';
  return typeof v === 'boolean' ? 'bool' : 'string';
}

function comparable(a: Value, b: Value): boolean {
  if (a === null || b === null) return true;
  return typeof a === typeof b;
}

function printValue(v: Value): string {
  if (v === null) return '<no value>';
  return String(v);
}

/** Go fmt.Sprintf for the verbs a hostname can use: %s %v %d %q %x %%. */
export function sprintf(format: string, args: Value[]): string {
  let i = 0;
  let out = '';
  for (let p = 0; p < format.length; p++) {
    const c = format[p];
    if (c !== '%') {
      out += c;
      continue;
    }
    const m = /^[-+# 0]*(\d*)(?:\.(\d+))?([a-zA-Z%])/.exec(format.slice(p + 1));
    if (!m) {
      out += '%!(NOVERB)';
      break;
    }
    p += m[0].length;
    const verb = m[3] as string;
    if (verb === '%') {
      out += '%';
      continue;
    }
    if (i >= args.length) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    const v = args[i++] as Value;
    let s: string;
    switch (verb) {
      case 's':
      case 'v':
        s = v === null ? '<nil>' : String(v);
        break;
      case 'd':
        s = typeof v === 'number' && Number.isInteger(v) ? String(v) : `%!d(${goType(v)}=${printValue(v)})`;
        break;
      case 'q':
        s = typeof v === 'string' ? JSON.stringify(v) : `%!q(${goType(v)}=${printValue(v)})`;
        break;
      case 'x':
        s = typeof v === 'string' ? Buffer.from(v).toString('hex') : typeof v === 'number' && Number.isInteger(v) ? v.toString(16) : `%!x(${goType(v)}=${printValue(v)})`;
        break;
      default:
        s = `%!${verb}(${goType(v)}=${printValue(v)})`;
    }
    const width = m[1] ? Number(m[1]) : 0;
    out += s.length < width ? (m[0].startsWith('-') ? s.padEnd(width) : s.padStart(width)) : s;
  }
  if (i < args.length) out += `%!(EXTRA ${args.slice(i).map((v) => `${goType(v)}=${printValue(v)}`).join(', ')})`;
  return out;
}
