// ESLint flat config: typescript-eslint strictTypeChecked plus the house rules that keep side effects
// behind the ports (STYLE.md B1, B4). Prettier owns formatting.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const effectLibraries = [
  'execa',
  'pg',
  'tar',
  'handlebars',
  'chalk',
  'node:child_process',
  'node:fs',
  'node:fs/promises',
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      curly: 'error',
      eqeqeq: 'error',
      'no-console': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-unnecessary-condition': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/ports/**', 'src/core/reporter.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: effectLibraries.map((name) => ({
            name,
            message: 'effects live behind src/ports (STYLE.md B4)',
          })),
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli.ts', 'src/core/config.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'exit', message: 'set process.exitCode in cli.ts instead' },
        {
          object: 'process',
          property: 'env',
          message: 'only cli.ts and core/config.ts read the environment',
        },
      ],
    },
  },
  {
    files: ['src/core/reporter.ts', 'scripts/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] },
          ],
        },
      ],
    },
  },
);
