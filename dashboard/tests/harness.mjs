// What the browser tests share: a real `ironhost` process (the release binary, with the
// dashboard embedded), a command-driven agent inside it, the REST API, and headless Chromium
// (Debian's, driven by playwright-core).

import { spawn, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
export const repo = path.resolve(here, '..', '..')
export const binary = process.env.IRONHOST_BIN ?? path.join(repo, 'target', 'release', 'ironhost')
export const screenshots = path.join(repo, 'docs', 'screenshots')
export const ADMIN_PASSWORD = 'dashboard-admin-pw'

/** A port free right now on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** The policy names of a bundle in chain order, as `ironhost policy list` prints them. */
export function bundleOrder(bundle = 'default') {
  const out = execFileSync(binary, ['policy', 'list', '--bundle', bundle], { encoding: 'utf8' })
  return out
    .split('\n')
    .filter((l) => /^\d+\s/.test(l))
    .map((l) => l.trim().split(/\s+/)[1])
}

/**
 * A running ironhost: `start` with the driven agent, or `serve` alone. Resolves once the
 * control plane's URL is printed.
 */
export class Host {
  constructor({ mode = 'start', home, port = 0, budget = 5, extraArgs = [] } = {}) {
    this.mode = mode
    this.home = home ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ih-dash-'))
    this.port = port
    this.budget = budget
    this.extraArgs = extraArgs
    this.inbox = fs.mkdtempSync(path.join(os.tmpdir(), 'ih-inbox-'))
    this.lines = []
    this.waiters = []
    this.stdout = ''
    this.stderr = ''
    this.next = 1
  }

  async start() {
    const listen = `127.0.0.1:${this.port}`
    const args =
      this.mode === 'start'
        ? ['start', path.join(here, 'agents', 'driven.py'), '--budget', String(this.budget), '--listen', listen, ...this.extraArgs, '--', this.inbox]
        : ['serve', '--listen', listen, ...this.extraArgs]
    const env = {
      ...process.env,
      IRONHOST_HOME: this.home,
      IRONHOST_ADMIN_PASSWORD: ADMIN_PASSWORD,
      IRONHOST_MASTER_KEY: 'dashboard-test-master-key-0123456789',
      VIRTUAL_ENV: path.join(repo, '.venv'),
    }
    for (const k of ['OPENAI_API_KEY', 'ANTHROPIC_API_KEY', 'IRONHOST_CONFIG', 'IRONHOST_LISTEN', 'IRONHOST_BIN']) delete env[k]
    this.proc = spawn(binary, args, { cwd: this.home, env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })))
    this.proc.stderr.on('data', (d) => (this.stderr += d))
    let buffered = ''
    this.proc.stdout.on('data', (d) => {
      this.stdout += d
      buffered += d
      let i
      while ((i = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, i)
        buffered = buffered.slice(i + 1)
        this.lines.push(line)
        for (const w of [...this.waiters]) w()
      }
    })
    const prefix = this.mode === 'start' ? 'dashboard: ' : 'control plane: '
    const line = await this.waitLine((l) => l.startsWith(prefix), 30_000, 'the control plane URL')
    this.url = line.slice(prefix.length).trim().replace(/\/$/, '')
    if (this.mode === 'start') {
      this.agentId = (await this.waitLine((l) => l.startsWith('agent_id: '), 10_000, 'the agent id')).slice(10).trim()
    }
    return this
  }

  /** The first stdout line (seen so far or later) that `pred` accepts. */
  waitLine(pred, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.lines.find(pred)
        if (hit === undefined) return false
        this.waiters = this.waiters.filter((w) => w !== check)
        clearTimeout(timer)
        resolve(hit)
        return true
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check)
        reject(new Error(`no ${what} within ${timeoutMs} ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`))
      }, timeoutMs)
      if (!check()) this.waiters.push(check)
    })
  }

  /** Have the agent carry out `cmd`; resolves with its JSON line. */
  async agent(cmd) {
    const n = this.next++
    const name = String(n).padStart(4, '0') + '.json'
    fs.writeFileSync(path.join(this.inbox, name + '.tmp'), JSON.stringify({ ...cmd, n }))
    fs.renameSync(path.join(this.inbox, name + '.tmp'), path.join(this.inbox, name))
    const line = await this.waitLine(
      (l) => l.startsWith('{') && JSON.parse(l).n === n,
      15_000,
      `answer to agent command ${JSON.stringify(cmd)}`,
    )
    return JSON.parse(line)
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return
    if (this.mode === 'start') fs.writeFileSync(path.join(this.inbox, 'stop'), '')
    else this.proc.kill('SIGTERM')
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000)
    await this.exited
    clearTimeout(timer)
  }
}

/** A REST call to `host` as `token`; throws with the API's message on a non-2xx answer. */
export async function api(host, method, p, body, token) {
  const headers = {}
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(host.url + '/api' + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`)
  return text ? JSON.parse(text) : undefined
}

export async function token(host, username = 'admin', password = ADMIN_PASSWORD) {
  return (await api(host, 'POST', '/auth/login', { username, password })).access_token
}

/** Headless Debian Chromium; the flags keep it off the (closed) network. */
export function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  })
}

/** A page on `host`, logged in through the login screen. */
export async function loggedIn(b, host, username = 'admin', password = ADMIN_PASSWORD) {
  const context = await b.newContext({ viewport: { width: 1440, height: 1000 } })
  const page = await context.newPage()
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`))
  await page.goto(host.url + '/')
  await page.getByTestId('login-username').fill(username)
  await page.getByTestId('login-password').fill(password)
  await page.getByTestId('login-submit').click()
  await page.getByTestId('user-name').waitFor({ timeout: 10_000 })
  await page.locator('[data-testid="conn-state"][data-state="open"]').waitFor({ timeout: 10_000 })
  await loaded(page)
  return page
}

/** Wait until the page has the API's figures (empty states render before them). */
export function loaded(page) {
  return page.locator('[data-testid="main"][data-loaded="true"]').waitFor({ timeout: 10_000 })
}

export async function shot(page, name) {
  fs.mkdirSync(screenshots, { recursive: true })
  await page.screenshot({ path: path.join(screenshots, name + '.png') })
}
