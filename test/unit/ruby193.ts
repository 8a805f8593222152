/**
 * A small scanner for Ruby source that must run on Chef Server 11's embedded Ruby 1.9.3 (the recipe
 * override). `ruby -c` on a newer Ruby accepts syntax that 1.9.3 rejects, so this looks for the newer
 * constructs in the CODE of a file: comments, string and heredoc text are skipped, string interpolations
 * (`#{...}`, also inside heredocs) are code and are scanned. Not a Ruby parser: it knows quotes, %-literals,
 * heredocs, comments, simple regex literals and character literals, which is what the override uses.
 */

export interface Finding {
  readonly line: number;
  readonly construct: string;
  readonly text: string;
}

interface Rule {
  readonly construct: string;
  readonly re: RegExp;
}

/** Constructs Ruby 1.9.3 does not have, checked on code with strings and comments blanked. */
const LINE_RULES: readonly Rule[] = [
  { construct: 'safe navigation `&.` (Ruby 2.3)', re: /&\./ },
  { construct: 'double splat `**opts` (Ruby 2.0)', re: /(?:^|[(,|]\s*)\*\*(?=[A-Za-z_)|,])/ },
  { construct: 'double splat `**opts` (Ruby 2.0)', re: /\b[a-z_]\w*[?!]?\s+\*\*[A-Za-z_]/ },
  { construct: 'squiggly heredoc `<<~` (Ruby 2.3)', re: /<<~/ },
  { construct: '`then` on an object (Ruby 2.6)', re: /\.then\b/ },
  { construct: '`yield_self` (Ruby 2.5)', re: /\.yield_self\b/ },
  { construct: 'symbol array `%i[]` (Ruby 2.0)', re: /%[iI][^\w\s]/ },
  { construct: '`__dir__` (Ruby 2.0)', re: /\b__dir__\b/ },
  { construct: '`dig` (Ruby 2.3)', re: /\.dig\(/ },
  { construct: '`transform_values` / `transform_keys` (Ruby 2.4/2.5)', re: /\.transform_(values|keys)\b/ },
  { construct: '`filter_map` (Ruby 2.7)', re: /\.filter_map\b/ },
  { construct: 'numbered block parameter `_1` (Ruby 2.7)', re: /\b_[1-9]\b/ },
  {
    construct: 'endless method `def x() = ...` (Ruby 3.0)',
    re: /\bdef\s+[\w.?!]+(\s*\([^)]*\)\s*|\s+)=(?!=)/,
  },
  {
    construct: 'keyword arguments in block parameters (Ruby 2.0)',
    re: /(?:\{|\bdo)\s*\|[^|]*\b[a-z_]\w*:(?!:)[^|]*\|/,
  },
];

const KWARG = /(?:^|,)\s*[a-z_]\w*:(?!:)/;

/** The parameter lists of `def`s (possibly spanning lines), for the keyword-argument rule. */
function defParams(code: readonly string[]): { line: number; params: string }[] {
  const out: { line: number; params: string }[] = [];
  code.forEach((text, i) => {
    const m = /\bdef\s+(?:self\.)?[\w?!=[\]<>+\-*/%]+(\s*\(|\s+(?=[a-z_*&]))/.exec(text);
    if (m === null) {
      return;
    }
    if (m[1]?.endsWith('(') === true) {
      let rest = text.slice(m.index + m[0].length);
      let j = i;
      while (!rest.includes(')') && j + 1 < code.length) {
        j += 1;
        rest += ` ${code[j] ?? ''}`;
      }
      out.push({
        line: i + 1,
        params: rest.slice(0, rest.indexOf(')') >= 0 ? rest.indexOf(')') : undefined),
      });
    } else {
      out.push({ line: i + 1, params: text.slice(m.index + m[0].length).split(/;|\bend\b/)[0] ?? '' });
    }
  });
  return out;
}

const PAIRS: Record<string, string> = { '(': ')', '[': ']', '{': '}', '<': '>' };
const REGEX_BEFORE = /(^|[(,=!~|&{[;:?]|\b(if|unless|when|and|or|not|return|while|until|then))\s*$/;

/** Blanks comments and string text, keeps code (including interpolations); one entry per source line. */
export function codeOnly(source: string): string[] {
  const src = source.replace(/\r\n/g, '\n');
  const code: string[] = src.split('\n').map(() => '');
  let line = 0;
  const emit = (ch: string): void => {
    code[line] = (code[line] ?? '') + ch;
  };
  const pending: { id: string; indent: boolean; interp: boolean }[] = [];

  // returns the index after the string's terminator; scans #{...} when interp
  const skipString = (start: number, open: string, close: string, interp: boolean): number => {
    let depth = 0;
    let i = start;
    emit('""');
    while (i < src.length) {
      const ch = src[i];
      if (ch === '\\') {
        if (src[i + 1] === '\n') {
          line += 1;
        }
        i += 2;
        continue;
      }
      if (ch === '\n') {
        line += 1;
        i += 1;
        continue;
      }
      if (interp && ch === '#' && src[i + 1] === '{') {
        i = lexCode(i + 2, true);
        continue;
      }
      if (open !== close && ch === open) {
        depth += 1;
      } else if (ch === close) {
        if (depth === 0) {
          return i + 1;
        }
        depth -= 1;
      }
      i += 1;
    }
    return i;
  };

  const readHeredocBodies = (start: number): number => {
    let i = start;
    while (pending.length > 0) {
      const h = pending.shift();
      if (h === undefined) {
        break;
      }
      for (;;) {
        if (i >= src.length) {
          return i;
        }
        const end = src.indexOf('\n', i);
        const text = src.slice(i, end < 0 ? src.length : end);
        if ((h.indent ? text.trim() : text) === h.id) {
          i = end < 0 ? src.length : end + 1;
          line += 1;
          break;
        }
        if (h.interp) {
          let k = 0;
          while (k < text.length) {
            if (text[k] === '\\') {
              k += 2;
              continue;
            }
            if (text[k] === '#' && text[k + 1] === '{') {
              const after = lexCode(i + k + 2, true);
              k = after - i;
              continue;
            }
            k += 1;
          }
        }
        i = end < 0 ? src.length : end + 1;
        line += 1;
      }
    }
    return i;
  };

  function lexCode(start: number, inInterpolation: boolean): number {
    let i = start;
    let depth = 0;
    while (i < src.length) {
      const ch = src[i] ?? '';
      const next = src[i + 1] ?? '';
      if (ch === '\n') {
        line += 1;
        i += 1;
        if (pending.length > 0) {
          i = readHeredocBodies(i);
        }
        continue;
      }
      if (ch === '#') {
        while (i < src.length && src[i] !== '\n') {
          i += 1;
        }
        continue;
      }
      if (inInterpolation && ch === '{') {
        depth += 1;
      } else if (inInterpolation && ch === '}') {
        if (depth === 0) {
          return i + 1;
        }
        depth -= 1;
      }
      if (ch === "'") {
        i = skipString(i + 1, "'", "'", false);
        continue;
      }
      if (ch === '"' || ch === '`') {
        i = skipString(i + 1, ch, ch, true);
        continue;
      }
      if (ch === '?' && (next === "'" || next === '"') && /[\s(,]/.test(src[i - 1] ?? ' ')) {
        emit('?c');
        i += 2;
        continue;
      }
      if (ch === '%' && /^[qQwWiIrx]?[^\w\s]/.test(src.slice(i + 1, i + 3))) {
        const kind = /[qQwWiIrx]/.test(next) ? next : 'Q';
        const open = kind === next ? (src[i + 2] ?? '') : next;
        if (/[^\w\s]/.test(open) && !(kind === 'Q' && /[=\s]/.test(open))) {
          emit(`%${kind}${open}`);
          const close = PAIRS[open] ?? open;
          i = skipString(i + (kind === next ? 3 : 2), open, close, /[QWIrx]/.test(kind));
          continue;
        }
      }
      const heredoc = /^<<([-~]?)(['"`]?)([A-Za-z_]\w*)\2/.exec(src.slice(i, i + 80));
      if (heredoc !== null && (heredoc[1] !== '' || heredoc[2] !== '' || /^[A-Z]/.test(heredoc[3] ?? ''))) {
        emit(`<<${heredoc[1] ?? ''}""`);
        pending.push({ id: heredoc[3] ?? '', indent: heredoc[1] !== '', interp: heredoc[2] !== "'" });
        i += heredoc[0].length;
        continue;
      }
      if (ch === '/' && REGEX_BEFORE.test(code[line] ?? '')) {
        emit('//');
        i += 1;
        while (i < src.length && src[i] !== '/' && src[i] !== '\n') {
          i += src[i] === '\\' ? 2 : 1;
        }
        i += 1;
        continue;
      }
      emit(ch);
      i += 1;
    }
    return i;
  }

  lexCode(0, false);
  return code;
}

/** Every 1.9.3-incompatible construct found in the code of `source`. */
export function scanRuby193(source: string): Finding[] {
  const code = codeOnly(source);
  const findings: Finding[] = [];
  code.forEach((text, i) => {
    for (const rule of LINE_RULES) {
      if (rule.re.test(text)) {
        findings.push({ line: i + 1, construct: rule.construct, text: text.trim() });
      }
    }
  });
  for (const d of defParams(code)) {
    if (KWARG.test(d.params)) {
      findings.push({
        line: d.line,
        construct: 'keyword arguments in `def` (Ruby 2.0/2.1)',
        text: d.params.trim(),
      });
    }
  }
  return findings.sort((a, b) => a.line - b.line);
}
