/**
 * Handlebars over templates/*.hbs and recipes-overrides/*, compiled with strict (a missing value is an
 * error) and noEscape (HTML escaping would corrupt conninfo strings).
 */
import type HandlebarsNs from 'handlebars';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

export interface Templates {
  /** @throws when the template is missing or a variable is undefined. */
  render(name: string, view: object): string;
}

/** The real templates port, reading from the package root (templates/ and recipes-overrides/). */
export function createTemplates(packageRoot: string): Templates {
  const cache = new Map<string, HandlebarsNs.TemplateDelegate>();
  let hb: typeof HandlebarsNs | undefined;
  return {
    render(name, view) {
      let template = cache.get(name);
      if (!template) {
        // Loaded on first use, so that commands that render nothing start fast.
        hb ??= (createRequire(import.meta.url)('handlebars') as typeof HandlebarsNs).create();
        const source = readFileSync(path.join(packageRoot, name), 'utf8');
        template = hb.compile(source, { strict: true, noEscape: true });
        cache.set(name, template);
      }
      return template(view);
    },
  };
}
