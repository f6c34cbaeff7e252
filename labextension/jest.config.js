// Unit tests of the extension's non-DOM logic: src/__tests__/*.spec.ts, in jsdom (the code uses
// window.setTimeout). ts-jest only transpiles (tsconfig.test.json has isolatedModules); the type
// check is `tsc -p tsconfig.test.json` in `npm run lint:check`.
module.exports = {
  testEnvironment: 'jsdom',
  roots: ['<rootDir>/src'],
  testMatch: ['**/__tests__/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  }
};
