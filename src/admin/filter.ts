/**
 * The `/stats?filter=` matcher: Envoy's filter is a regular expression (RE2), and JavaScript's RegExp
 * backtracks, so `(a+)+$` on a long line blocks the event loop (and with it DNS and health checks) for
 * minutes. This is a Thompson NFA over the RE2-like subset stats filters use — literals, `.`, classes
 * (`[a-z]`, `[^.]`, `\d \w \s` and negations), anchors `^ $`, groups `(…)` `(?:…)`, `|`, `* + ?` and
 * `{n}` `{n,}` `{n,m}` (lazy forms match the same lines) — run as a set of states in one pass over each
 * line: time is linear in the text for a given pattern, and a work budget bounds it absolutely.
 * Backreferences and lookaround (not in RE2 either) are refused with a clear error.
 */

/** Longest pattern accepted (characters). */
export const MAX_FILTER_LENGTH = 256;
/** Most NFA states a pattern may compile to (counted repetition multiplies states). */
const MAX_STATES = 2_000;
/** Deepest group nesting. */
const MAX_GROUP_DEPTH = 32;
/** Largest count in `{n,m}`. */
const MAX_REPEAT = 100;
/** State visits per `test` run over all lines of one request: about 0.1-0.3 s at worst. */
export const FILTER_WORK_BUDGET = 50_000_000;

type CharTest = (c: number) => boolean;
type Ast =
  | { t: 'char'; test: CharTest }
  | { t: 'bol' }
  | { t: 'eol' }
  | { t: 'empty' }
  | { t: 'cat'; items: Ast[] }
  | { t: 'alt'; items: Ast[] }
  | { t: 'rep'; item: Ast; min: number; max: number }; // max -1: unbounded

/** A bad pattern, with what is wrong and where. */
export class FilterError extends Error {}

const isDigit: CharTest = (c) => c >= 48 && c <= 57;
const isWord: CharTest = (c) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isSpace: CharTest = (c) => c === 32 || (c >= 9 && c <= 13);
const not = (f: CharTest): CharTest => (c) => !f(c);

class PatternParser {
  private i = 0;
  private depth = 0;
  constructor(private readonly src: string) {}

  parse(): Ast {
    const ast = this.alt();
    if (this.i < this.src.length) throw this.fail(`unbalanced ")"`);
    return ast;
  }

  private fail(what: string): FilterError {
    return new FilterError(`${what} at position ${this.i + 1}`);
  }

  private alt(): Ast {
    const items = [this.cat()];
    while (this.src[this.i] === '|') {
      this.i++;
      items.push(this.cat());
    }
    return items.length === 1 ? items[0]! : { t: 'alt', items };
  }

  private cat(): Ast {
    const items: Ast[] = [];
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') {
      let atom = this.atom();
      for (;;) {
        const q = this.quantifier();
        if (!q) break;
        if (atom.t === 'bol' || atom.t === 'eol') throw this.fail('an anchor cannot be repeated');
        atom = { t: 'rep', item: atom, min: q.min, max: q.max };
      }
      items.push(atom);
    }
    if (items.length === 0) return { t: 'empty' };
    return items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  private quantifier(): { min: number; max: number } | undefined {
    const c = this.src[this.i];
    let q: { min: number; max: number } | undefined;
    if (c === '*') q = { min: 0, max: -1 };
    else if (c === '+') q = { min: 1, max: -1 };
    else if (c === '?') q = { min: 0, max: 1 };
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i));
      if (!m) return undefined; // a literal "{", as RE2 reads it
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === '' ? -1 : Number(m[3]);
      if (min > MAX_REPEAT || max > MAX_REPEAT) throw this.fail(`repeat count over ${MAX_REPEAT}`);
      if (max !== -1 && max < min) throw this.fail(`bad repeat {${min},${max}}`);
      this.i += m[0].length;
      if (this.src[this.i] === '?') this.i++;
      return { min, max };
    }
    if (!q) return undefined;
    this.i++;
    if (this.src[this.i] === '?') this.i++; // lazy: the same set of matching lines
    return q;
  }

  private atom(): Ast {
    const c = this.src[this.i]!;
    this.i++;
    switch (c) {
      case '(': {
        if (this.src[this.i] === '?') {
          if (this.src[this.i + 1] !== ':') throw this.fail('lookaround and group flags are not supported');
          this.i += 2;
        }
        if (++this.depth > MAX_GROUP_DEPTH) throw this.fail(`groups nested deeper than ${MAX_GROUP_DEPTH}`);
        const inner = this.alt();
        this.depth--;
        if (this.src[this.i] !== ')') throw this.fail('missing ")"');
        this.i++;
        return inner;
      }
      case '[':
        return { t: 'char', test: this.charClass() };
      case '.':
        return { t: 'char', test: (ch) => ch !== 10 };
      case '^':
        return { t: 'bol' };
      case '$':
        return { t: 'eol' };
      case '\\':
        return { t: 'char', test: this.escape(false) };
      case '*':
      case '+':
      case '?':
        this.i--;
        throw this.fail(`nothing to repeat before "${c}"`);
      default: {
        const code = c.charCodeAt(0);
        return { t: 'char', test: (ch) => ch === code };
      }
    }
  }

  /** After a backslash: a class escape or a literal. */
  private escape(inClass: boolean): CharTest {
    const e = this.src[this.i];
    if (e === undefined) throw this.fail('trailing "\\"');
    this.i++;
    switch (e) {
      case 'd':
        return isDigit;
      case 'D':
        return not(isDigit);
      case 'w':
        return isWord;
      case 'W':
        return not(isWord);
      case 's':
        return isSpace;
      case 'S':
        return not(isSpace);
      case 't':
        return (c) => c === 9;
      case 'n':
        return (c) => c === 10;
      case 'r':
        return (c) => c === 13;
    }
    if (/[0-9]/.test(e) && !inClass) throw this.fail('backreferences are not supported');
    if (/[A-Za-z0-9]/.test(e)) throw this.fail(`unsupported escape "\\${e}"`);
    const code = e.charCodeAt(0);
    return (c) => c === code;
  }

  /** After a backslash inside a class: the one character it stands for. */
  private escapedCode(): number {
    const e = this.src[this.i];
    if (e === undefined) throw this.fail('trailing "\\"');
    this.i++;
    if (e === 't') return 9;
    if (e === 'n') return 10;
    if (e === 'r') return 13;
    if (/[A-Za-z0-9]/.test(e)) throw this.fail(`unsupported escape "\\${e}" in a character class`);
    return e.charCodeAt(0);
  }

  private charClass(): CharTest {
    const negate = this.src[this.i] === '^';
    if (negate) this.i++;
    const parts: CharTest[] = [];
    let first = true;
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined) throw this.fail('missing "]"');
      if (c === ']' && !first) {
        this.i++;
        break;
      }
      first = false;
      let lo: number;
      if (c === '\\') {
        const e = this.src[this.i + 1];
        if (e !== undefined && 'dDwWsS'.includes(e)) {
          this.i++;
          parts.push(this.escape(true));
          continue;
        }
        this.i++;
        lo = this.escapedCode();
      } else {
        lo = c.charCodeAt(0);
        this.i++;
      }
      if (this.src[this.i] === '-' && this.src[this.i + 1] !== undefined && this.src[this.i + 1] !== ']') {
        this.i++;
        let hi: number;
        if (this.src[this.i] === '\\') {
          this.i++;
          hi = this.escapedCode();
        } else {
          hi = this.src.charCodeAt(this.i);
          this.i++;
        }
        if (hi < lo) throw this.fail('bad range in a character class');
        const l = lo;
        parts.push((x) => x >= l && x <= hi);
      } else {
        const l = lo;
        parts.push((x) => x === l);
      }
    }
    const any: CharTest = (x) => parts.some((p) => p(x));
    return negate ? not(any) : any;
  }
}

// NFA states: kinds as small numbers; `out`/`alt` are state indexes (-1: not yet patched).
const CHAR = 0;
const SPLIT = 1;
const BOL = 2;
const EOL = 3;
const MATCH = 4;

interface State {
  kind: number;
  test?: CharTest;
  out: number;
  alt: number;
}

interface Frag {
  start: number;
  /** Dangling exits: [state, 0 for out | 1 for alt]. */
  holes: Array<[number, 0 | 1]>;
}

class NfaBuilder {
  readonly states: State[] = [];

  private add(kind: number, test?: CharTest): number {
    if (this.states.length >= MAX_STATES) throw new FilterError(`pattern too complex (over ${MAX_STATES} states; lower the {n,m} counts)`);
    this.states.push({ kind, ...(test ? { test } : {}), out: -1, alt: -1 });
    return this.states.length - 1;
  }

  private patch(holes: Array<[number, 0 | 1]>, to: number): void {
    for (const [s, which] of holes) {
      if (which === 0) this.states[s]!.out = to;
      else this.states[s]!.alt = to;
    }
  }

  /** Compiles an AST node (recursion bounded by the group depth and pattern length limits). */
  build(n: Ast): Frag {
    switch (n.t) {
      case 'char': {
        const s = this.add(CHAR, n.test);
        return { start: s, holes: [[s, 0]] };
      }
      case 'bol':
      case 'eol': {
        const s = this.add(n.t === 'bol' ? BOL : EOL);
        return { start: s, holes: [[s, 0]] };
      }
      case 'empty': {
        const s = this.add(SPLIT);
        return { start: s, holes: [[s, 0], [s, 1]] };
      }
      case 'cat': {
        let f = this.build(n.items[0]!);
        const start = f.start;
        for (const item of n.items.slice(1)) {
          const g = this.build(item);
          this.patch(f.holes, g.start);
          f = g;
        }
        return { start, holes: f.holes };
      }
      case 'alt': {
        let f = this.build(n.items[0]!);
        for (const item of n.items.slice(1)) {
          const g = this.build(item);
          const s = this.add(SPLIT);
          this.states[s]!.out = f.start;
          this.states[s]!.alt = g.start;
          f = { start: s, holes: f.holes.concat(g.holes) };
        }
        return f;
      }
      case 'rep': {
        // x{min,max}: min copies, then (max - min) optional copies, or a star when unbounded.
        const parts: Frag[] = [];
        for (let k = 0; k < n.min; k++) parts.push(this.build(n.item));
        if (n.max === -1) {
          const e = this.build(n.item);
          const s = this.add(SPLIT);
          this.states[s]!.out = e.start;
          this.patch(e.holes, s);
          parts.push({ start: s, holes: [[s, 1]] });
        } else {
          for (let k = n.min; k < n.max; k++) {
            const e = this.build(n.item);
            const s = this.add(SPLIT);
            this.states[s]!.out = e.start;
            parts.push({ start: s, holes: e.holes.concat([[s, 1]]) });
          }
        }
        if (parts.length === 0) return this.build({ t: 'empty' });
        for (let k = 1; k < parts.length; k++) this.patch(parts[k - 1]!.holes, parts[k]!.start);
        return { start: parts[0]!.start, holes: parts[parts.length - 1]!.holes };
      }
    }
  }
}

/** A compiled filter: `test(line)` is true when the pattern matches anywhere in the line (as RE2 search). */
export class StatsFilter {
  private readonly states: State[];
  private readonly start: number;
  private readonly mark: Int32Array;
  private generation = 0;
  private work = 0;

  private constructor(states: State[], start: number) {
    this.states = states;
    this.start = start;
    this.mark = new Int32Array(states.length).fill(-1);
  }

  /** Compiles `pattern`; throws FilterError naming what is wrong. */
  static compile(pattern: string): StatsFilter {
    if (pattern.length > MAX_FILTER_LENGTH) throw new FilterError(`pattern longer than ${MAX_FILTER_LENGTH} characters`);
    const ast = new PatternParser(pattern).parse();
    const b = new NfaBuilder();
    const f = b.build(ast);
    const m = b.states.length;
    b.states.push({ kind: MATCH, out: -1, alt: -1 });
    for (const [s, which] of f.holes) {
      if (which === 0) b.states[s]!.out = m;
      else b.states[s]!.alt = m;
    }
    return new StatsFilter(b.states, f.start);
  }

  /** Adds `s` and its epsilon closure at `pos` to `list`; true when the match state is reached. */
  private addClosure(list: number[], s0: number, pos: number, len: number): boolean {
    const stack = [s0];
    let matched = false;
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (s < 0 || this.mark[s] === this.generation) continue;
      this.mark[s] = this.generation;
      if (++this.work > FILTER_WORK_BUDGET) throw new FilterError(`the filter needs more work than allowed over these stats (${FILTER_WORK_BUDGET} steps); use a simpler pattern`);
      const st = this.states[s]!;
      switch (st.kind) {
        case CHAR:
          list.push(s);
          break;
        case SPLIT:
          stack.push(st.alt, st.out);
          break;
        case BOL:
          if (pos === 0) stack.push(st.out);
          break;
        case EOL:
          if (pos === len) stack.push(st.out);
          break;
        case MATCH:
          matched = true;
          break;
      }
    }
    return matched;
  }

  /** Steps taken so far over every call: what the work budget counts (each step is constant work). */
  get steps(): number {
    return this.work;
  }

  /** True when the pattern matches somewhere in `line`; the work budget spans every call on this filter. */
  test(line: string): boolean {
    const len = line.length;
    let current: number[] = [];
    for (let pos = 0; ; pos++) {
      // A new attempt starts at every position (search, not full match), sharing the state set.
      this.generation++;
      const next: number[] = [];
      let matched = false;
      if (pos > 0) {
        const c = line.charCodeAt(pos - 1);
        for (const s of current) {
          const st = this.states[s]!;
          if (st.test!(c) && this.addClosure(next, st.out, pos, len)) matched = true;
        }
      }
      if (this.addClosure(next, this.start, pos, len)) matched = true;
      if (matched) return true;
      if (pos === len) return false;
      current = next;
    }
  }
}
