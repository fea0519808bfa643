// The dashboard builds from a clean copy (no node_modules, an empty npm cache) with
// scripts/build-dashboard.sh, and the install leaves package-lock.json byte for byte as committed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dashboard = join(dirname(fileURLToPath(import.meta.url)), '..');
const script = join(dashboard, '..', 'scripts', 'build-dashboard.sh');

test('a clean copy builds and the lock file comes out unchanged', () => {
  const root = mkdtempSync(join(tmpdir(), 'ironhost-dashboard-'));
  try {
    const copy = join(root, 'dashboard');
    cpSync(dashboard, copy, {
      recursive: true,
      filter: (src) => !/[/\\](node_modules|dist)$/.test(src),
    });
    assert.equal(existsSync(join(copy, 'node_modules')), false);
    const before = readFileSync(join(copy, 'package-lock.json'));
    execFileSync('bash', [script, copy], {
      env: { ...process.env, npm_config_cache: join(root, 'npm-cache') },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const after = readFileSync(join(copy, 'package-lock.json'));
    assert.ok(before.equals(after), 'npm ci changed package-lock.json');
    assert.ok(existsSync(join(copy, 'dist', 'index.html')), 'dist/index.html was built');
    assert.ok(existsSync(join(copy, 'dist', 'index.html.br')), 'no Brotli copy of dist/index.html');
    assert.ok(existsSync(join(copy, 'dist', 'index.html.gz')), 'no gzip copy of dist/index.html');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
