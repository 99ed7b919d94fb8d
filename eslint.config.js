// @ts-check
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {
    ignores: [
      'node_modules',
      'dist',
      'data',
      'artifacts',
      'coverage',
      'src/web/vendor',
      // The seed's frontend code, kept byte for byte as the seed has it.
      'test/web/fixtures/seed-frontend.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { module: 'writable', require: 'readonly' },
    },
  },
  {
    // The pages' browser modules (served as they are, no build step).
    files: ['src/web/assets/**/*.js'],
    languageOptions: {
      globals: Object.fromEntries(
        [
          'atob',
          'clearTimeout',
          'document',
          'fetch',
          'history',
          'location',
          'Node',
          'performance',
          'PerformanceObserver',
          'requestAnimationFrame',
          'sessionStorage',
          'setInterval',
          'setTimeout',
          'URLSearchParams',
          'WebSocket',
          'window',
        ].map((name) => [name, 'readonly'])
      ),
    },
  },
  {
    languageOptions: {
      globals: { console: 'readonly', process: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'off',
      eqeqeq: ['error', 'always'],
    },
  }
)
